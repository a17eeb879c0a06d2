#!/usr/bin/env bash
# Runs a program inside a small VM whose kernel has IPVS (this machine's kernel has none):
# Debian's linux-image-6.1 (fetched with `apt-get download`, cached under target/ipvs-vm),
# booted by qemu with TCG (KVM hangs the guest here) from a busybox initramfs that holds
# the program and the shared libraries it needs, ipvsadm, iproute2's ip and the IPVS
# modules. The guest loads the modules, sets up its addresses and runs the program once;
# its output comes back on the serial console, which this script prints. Exit status:
# the program's (125 when the guest never got to run it).
#
#   scripts/ipvs-vm.sh [--env NAME=VALUE]... [--bin FILE=NAME]... [--log FILE] -- PROGRAM [ARGS...]
#
# --bin copies another program (with its shared libraries) into the guest as /bin/NAME
# (the IPVS VM test puts the real `halo` binary there and runs its director).
#
# Guest network: lo up, dummy interface d0 192.0.2.1/24 (the real servers' net: DR and NAT
# packets to them leave by d0 and vanish), VIPs 198.51.100.10/32 and 198.51.100.20/32 on
# lo, 203.0.113.1/32 on lo for services of someone else.
# Needs root only to be sure apt-get may write its cache; packages: qemu-system-x86,
# busybox-static, cpio, kmod, ipvsadm, iproute2 (scripts/test.sh installs them).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cache=${HALO_IPVS_VM_CACHE:-$here/target/ipvs-vm}
timeout_s=${HALO_IPVS_VM_TIMEOUT:-900}
envs=()
bins=()
log=
while [ $# -gt 0 ]; do
    case "$1" in
        --env) envs+=("$2"); shift 2 ;;
        --bin) bins+=("$2"); shift 2 ;;
        --log) log=$2; shift 2 ;;
        --) shift; break ;;
        *) echo "ipvs-vm.sh: unknown option $1 (usage: $0 [--env N=V]... [--bin FILE=NAME]... [--log FILE] -- PROGRAM [ARGS...])" >&2; exit 2 ;;
    esac
done
[ $# -ge 1 ] || { echo "ipvs-vm.sh: no program given" >&2; exit 2; }
prog=$1; shift
[ -x "$prog" ] || { echo "ipvs-vm.sh: $prog is not an executable file" >&2; exit 2; }

need() { command -v "$1" >/dev/null 2>&1 || [ -x "$1" ] || { echo "ipvs-vm.sh: $1 not found: install the Debian package $2" >&2; exit 2; }; }
need qemu-system-x86_64 qemu-system-x86
need cpio cpio
need /bin/busybox busybox-static
need ipvsadm ipvsadm
need /usr/sbin/ipvsadm ipvsadm
need ip iproute2
need dpkg-deb dpkg
file /bin/busybox 2>/dev/null | grep -q 'dynamically linked' && { echo "ipvs-vm.sh: /bin/busybox is not static: install busybox-static" >&2; exit 2; }

# The kernel: the version linux-image-amd64 depends on now, or any cached one offline.
mkdir -p "$cache"
pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }' || true)
deb=
if [ -n "$pkg" ]; then deb=$(ls "$cache"/"${pkg}"_*.deb 2>/dev/null | head -1 || true); fi
if [ -z "$deb" ] && [ -n "$pkg" ]; then
    echo "== ipvs-vm: apt-get download $pkg" >&2
    (cd "$cache" && apt-get download "$pkg" >&2) || true
    deb=$(ls "$cache"/"${pkg}"_*.deb 2>/dev/null | head -1 || true)
fi
[ -n "$deb" ] || deb=$(ls "$cache"/linux-image-*-amd64_*.deb 2>/dev/null | head -1 || true)
[ -n "$deb" ] || { echo "ipvs-vm.sh: no kernel package: apt-get download linux-image-<abi>-amd64 failed and $cache has none" >&2; exit 2; }
kx="$cache/$(basename "$deb" .deb)"
if [ ! -f "$kx/.done" ]; then
    rm -rf "$kx"; mkdir -p "$kx"
    dpkg-deb -x "$deb" "$kx"
    touch "$kx/.done"
fi
vmlinuz=$(ls "$kx"/boot/vmlinuz-* | head -1)
moddir=$(ls -d "$kx"/lib/modules/* | head -1)

work=$(mktemp -d "${TMPDIR:-/tmp}/ipvs-vm.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root"/{bin,sbin,etc,proc,sys,dev,tmp,run,var,lib/modules,usr/bin,usr/sbin}
ln -s ../run "$root/var/run"

cp /bin/busybox "$root/bin/busybox"
for a in $(/bin/busybox --list); do [ -e "$root/bin/$a" ] || ln -s busybox "$root/bin/$a"; done

# A program and every shared library ldd names, at the same paths.
copy_with_libs() { # SRC DEST_IN_ROOT [strip]
    local src=$1 dst=$root$2
    mkdir -p "$(dirname "$dst")"
    rm -f "$dst"
    if [ "${3:-}" = strip ] && command -v strip >/dev/null 2>&1; then
        strip -o "$dst" "$src" 2>/dev/null || cp "$src" "$dst"
    else
        cp -L "$src" "$dst"
    fi
    chmod +x "$dst"
    { ldd "$src" 2>/dev/null || true; } | { grep -o '/[^ ]*' || true; } | while read -r lib; do
        [ -e "$root$lib" ] || { mkdir -p "$root$(dirname "$lib")"; cp -L "$lib" "$root$lib"; }
    done
}
copy_with_libs "$prog" /bin/halo-guest strip
for b in "${bins[@]}"; do
    src=${b%%=*} name=${b#*=}
    case "$b" in *=*) ;; *) echo "ipvs-vm.sh: --bin $b: expected FILE=NAME" >&2; exit 2 ;; esac
    [ -x "$src" ] || { echo "ipvs-vm.sh: --bin $src is not an executable file" >&2; exit 2; }
    case "$name" in ''|*/*) echo "ipvs-vm.sh: --bin $b: NAME must be a plain file name" >&2; exit 2 ;; esac
    copy_with_libs "$src" "/bin/$name" strip
done
copy_with_libs "$(command -v ipvsadm || echo /usr/sbin/ipvsadm)" /sbin/ipvsadm
rm -f "$root/bin/ip"
copy_with_libs "$(command -v ip)" /sbin/ip

# IPVS and what it needs, in load order (modinfo depends), every scheduler, and the
# interfaces of the scenario.
mods="crypto/crc32c_generic lib/libcrc32c net/ipv4/netfilter/nf_defrag_ipv4 net/ipv6/netfilter/nf_defrag_ipv6
net/netfilter/nf_conntrack net/netfilter/ipvs/ip_vs drivers/net/dummy drivers/net/veth net/llc/llc net/802/stp
net/bridge/bridge"
for s in rr wrr lc wlc lblc lblcr dh sh sed nq fo ovf mh; do mods="$mods net/netfilter/ipvs/ip_vs_$s"; done
list=
for m in $mods; do
    f=$(ls "$moddir/kernel/$m.ko"* 2>/dev/null | head -1 || true)
    [ -n "$f" ] || { echo "ipvs-vm.sh: module $m missing from $(basename "$deb")" >&2; exit 2; }
    case "$f" in
        *.ko.xz) xz -dc "$f" > "$root/lib/modules/$(basename "$m").ko" ;;
        *.ko.zst) zstd -dqc "$f" > "$root/lib/modules/$(basename "$m").ko" ;;
        *) cp "$f" "$root/lib/modules/$(basename "$m").ko" ;;
    esac
    list="$list $(basename "$m")"
done

# The guest's command line, quoted for sh.
cmd="/bin/halo-guest"
for a in "$@"; do cmd="$cmd '$(printf '%s' "$a" | sed "s/'/'\\\\''/g")'"; done
{
    echo '#!/bin/sh'
    echo 'export PATH=/sbin:/bin:/usr/sbin:/usr/bin HOME=/tmp'
    echo 'mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev; mount -t tmpfs tmpfs /run'
    echo 'echo 1 > /proc/sys/kernel/printk'
    echo "for m in $list; do insmod /lib/modules/\$m.ko || echo \"=== HALO-GUEST-INSMOD-FAILED \$m\"; done"
    echo 'ip link set lo up'
    echo 'ip link add d0 type dummy && ip link set d0 up && ip addr add 192.0.2.1/24 dev d0'
    echo 'ip addr add 198.51.100.10/32 dev lo; ip addr add 198.51.100.20/32 dev lo; ip addr add 203.0.113.1/32 dev lo'
    for e in "${envs[@]}"; do echo "export $(printf '%q' "$e")"; done
    echo 'echo "=== HALO-GUEST-BEGIN $(uname -r)"'
    echo "$cmd"
    echo 'echo "=== HALO-GUEST-EXIT $?"'
    echo 'poweroff -f'
} > "$root/init"
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet) | gzip -1 > "$work/initrd.gz"

console=${log:-$work/console.log}
set +e
timeout "$timeout_s" qemu-system-x86_64 -accel tcg -m 1024 -smp 1 -nic none \
    -display none -vga none -monitor none -serial "file:$console" -no-reboot \
    -kernel "$vmlinuz" -initrd "$work/initrd.gz" \
    -append "console=ttyS0 panic=-1 quiet loglevel=1 rdinit=/init" </dev/null >&2
qrc=$?
set -e
tr -d '\r' < "$console"
[ $qrc -eq 124 ] && echo "ipvs-vm.sh: the VM did not power off within ${timeout_s}s" >&2
rc=$(tr -d '\r' < "$console" | sed -n 's/^=== HALO-GUEST-EXIT \([0-9]*\).*/\1/p' | tail -1)
exit "${rc:-125}"
