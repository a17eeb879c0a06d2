//! The `serial` medium: a raw, non-blocking tty carrying classic text frames
//! (`>>>\n` … `<<<\n`, spec §3.2.1), and the framer that cuts the byte stream back into them.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::sys::termios::{self, BaudRate, ControlFlags, FlushArg, SetArg, SpecialCharacterIndices};

use super::{LinkStats, MAX_BATCH};
use crate::HostError;

/// First line of a classic frame.
pub(crate) const FRAME_START: &[u8] = b">>>\n";
/// Last line of a classic frame.
pub(crate) const FRAME_END: &[u8] = b"<<<\n";
/// Frames longer than this are discarded and the stream resynchronised on the next start.
pub(crate) const MAX_FRAME: usize = 64 * 1024;

/// The speeds `baud` accepts in Heartbeat (§1.4).
fn baud_rate(baud: u32) -> Option<BaudRate> {
    Some(match baud {
        9600 => BaudRate::B9600,
        19200 => BaudRate::B19200,
        38400 => BaudRate::B38400,
        57600 => BaudRate::B57600,
        115200 => BaudRate::B115200,
        230400 => BaudRate::B230400,
        460800 => BaudRate::B460800,
        _ => return None,
    })
}

/// An open serial device.
pub(super) struct Port {
    file: File,
    framer: Framer,
    /// The unwritten tail of a frame the tty took only in part; finished before any new frame
    /// so that frames never interleave.
    pending: Vec<u8>,
}

impl Port {
    pub(super) fn open(device: &Path, baud: u32, medium: &str) -> Result<Port, HostError> {
        let speed = baud_rate(baud).ok_or_else(|| {
            HostError::medium(
                medium,
                format!("unsupported baud rate {baud} (9600 19200 38400 57600 115200 230400 460800)"),
            )
        })?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
            .open(device)
            .map_err(|e| HostError::io(medium, "open", e))?;
        let mut tio = termios::tcgetattr(&file).map_err(|e| HostError::io(medium, "not a terminal", e))?;
        termios::cfmakeraw(&mut tio);
        // Ignore modem lines and hardware flow control: a silent peer must not block writes.
        tio.control_flags |= ControlFlags::CLOCAL | ControlFlags::CREAD;
        tio.control_flags &= !(ControlFlags::CRTSCTS | ControlFlags::HUPCL);
        tio.control_chars[SpecialCharacterIndices::VMIN as usize] = 1;
        tio.control_chars[SpecialCharacterIndices::VTIME as usize] = 0;
        termios::cfsetspeed(&mut tio, speed).map_err(|e| HostError::io(medium, "cfsetspeed", e))?;
        termios::tcsetattr(&file, SetArg::TCSANOW, &tio)
            .map_err(|e| HostError::io(medium, "tcsetattr", e))?;
        termios::tcflush(&file, FlushArg::TCIOFLUSH).map_err(|e| HostError::io(medium, "tcflush", e))?;
        Ok(Port { file, framer: Framer::default(), pending: Vec::new() })
    }

    pub(super) fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// Writes whatever is left of a previous frame. Ok(true) when nothing is pending anymore.
    fn flush_pending(&mut self) -> io::Result<bool> {
        while !self.pending.is_empty() {
            match (&self.file).write(&self.pending) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => {
                    self.pending.clear();
                    return Err(e);
                }
            }
        }
        Ok(true)
    }

    /// Queues one frame without blocking. Ok(true) = handed to the tty (perhaps in part, the
    /// rest follows on the next call); Ok(false) = dropped because the tty buffer is full.
    pub(super) fn send(&mut self, frame: &[u8]) -> io::Result<bool> {
        if !self.flush_pending()? {
            return Ok(false);
        }
        let mut written = 0;
        while written < frame.len() {
            match (&self.file).write(&frame[written..]) {
                Ok(0) => break,
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if written == 0 => return Err(e),
                Err(_) => break,
            }
        }
        if written == 0 {
            return Ok(false);
        }
        self.pending.extend_from_slice(&frame[written..]);
        Ok(true)
    }

    pub(super) fn recv(
        &mut self,
        link: usize,
        stats: &mut LinkStats,
        out: &mut Vec<(usize, Vec<u8>)>,
    ) -> io::Result<()> {
        // Reading is the only regular wake-up a serial link gets; use it to finish a frame the
        // tty could not take whole.
        let _ = self.flush_pending();
        let mut buf = [0u8; 4096];
        for _ in 0..MAX_BATCH {
            match (&self.file).read(&mut buf) {
                Ok(0) => {
                    stats.rx_errors += 1;
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "hangup"));
                }
                Ok(n) => {
                    stats.rx_bytes += n as u64;
                    let before = self.framer.resyncs;
                    self.framer.push(&buf[..n], &mut |frame| {
                        stats.rx_packets += 1;
                        out.push((link, frame));
                    });
                    stats.rx_errors += self.framer.resyncs - before;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => {
                    stats.rx_errors += 1;
                    return Err(e);
                }
            }
        }
        Ok(())
    }
}

/// Cuts a byte stream into classic frames: every complete `>>>\n` … `<<<\n` block, markers
/// included. Bytes before `>>>\n` are noise and skipped; a `>>>` line inside a frame means the
/// frame lost its end, so it is dropped and the new one starts there; a frame growing past
/// [`MAX_FRAME`] is dropped and the stream hunts for the next start.
#[derive(Debug, Default)]
pub(crate) struct Framer {
    buf: Vec<u8>,
    in_frame: bool,
    /// Offset in `buf` of the first line of the current frame not yet looked at.
    scan: usize,
    /// Frames lost (truncated or oversized).
    pub(crate) resyncs: u64,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

impl Framer {
    pub(crate) fn push(&mut self, data: &[u8], emit: &mut dyn FnMut(Vec<u8>)) {
        self.buf.extend_from_slice(data);
        'outer: loop {
            if !self.in_frame {
                match find(&self.buf, FRAME_START) {
                    Some(i) => {
                        self.buf.drain(..i);
                        self.in_frame = true;
                        self.scan = FRAME_START.len();
                    }
                    None => {
                        // Keep what could be the beginning of a start marker.
                        let keep = self.buf.len().min(FRAME_START.len() - 1);
                        self.buf.drain(..self.buf.len() - keep);
                        return;
                    }
                }
            }
            while let Some(nl) = self.buf[self.scan..].iter().position(|&b| b == b'\n') {
                let line_end = self.scan + nl + 1;
                let line = &self.buf[self.scan..line_end];
                if line == FRAME_END {
                    let frame: Vec<u8> = self.buf.drain(..line_end).collect();
                    if frame.len() <= MAX_FRAME {
                        emit(frame);
                    } else {
                        self.resyncs += 1;
                    }
                    self.in_frame = false;
                    continue 'outer;
                }
                if line == FRAME_START {
                    self.buf.drain(..self.scan);
                    self.resyncs += 1;
                    self.scan = FRAME_START.len();
                    continue;
                }
                self.scan = line_end;
                if self.scan > MAX_FRAME {
                    self.buf.drain(..self.scan);
                    self.resyncs += 1;
                    self.in_frame = false;
                    continue 'outer;
                }
            }
            if self.buf.len() > MAX_FRAME {
                // One endless line: drop it all and hunt for the next start.
                self.buf.clear();
                self.resyncs += 1;
                self.in_frame = false;
            }
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(chunks: &[&[u8]]) -> (Vec<Vec<u8>>, u64) {
        let mut f = Framer::default();
        let mut out = Vec::new();
        for c in chunks {
            f.push(c, &mut |fr| out.push(fr));
        }
        (out, f.resyncs)
    }

    #[test]
    fn whole_and_split_frames() {
        let (out, lost) = frames(&[b">>>\nt=status\n<<<\n>>>\nt=a\n<<<\n"]);
        assert_eq!(out, vec![b">>>\nt=status\n<<<\n".to_vec(), b">>>\nt=a\n<<<\n".to_vec()]);
        assert_eq!(lost, 0);
        let msg = b">>>\nt=status\nsrc=nodea\n<<<\n";
        for cut in 0..msg.len() {
            let (out, _) = frames(&[&msg[..cut], &msg[cut..]]);
            assert_eq!(out, vec![msg.to_vec()], "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = msg.chunks(1).collect();
        assert_eq!(frames(&bytes).0, vec![msg.to_vec()]);
    }

    #[test]
    fn garbage_and_resync() {
        let (out, lost) = frames(&[b"\0\xffnoise<<<\n>>", b">\nx=1\n<<<\n"]);
        assert_eq!(out, vec![b">>>\nx=1\n<<<\n".to_vec()]);
        assert_eq!(lost, 0);
        // A frame that lost its end is dropped at the next start line.
        let (out, lost) = frames(&[b">>>\nx=1\n>>>\ny=2\n<<<\n"]);
        assert_eq!(out, vec![b">>>\ny=2\n<<<\n".to_vec()]);
        assert_eq!(lost, 1);
        // "<<<" inside a value is not an end.
        let (out, _) = frames(&[b">>>\nx=<<<\n<<<\n"]);
        assert_eq!(out, vec![b">>>\nx=<<<\n<<<\n".to_vec()]);
    }

    #[test]
    fn oversize_frames_resync() {
        let line = [b'a'; 1000];
        let mut f = Framer::default();
        let mut out = Vec::new();
        f.push(b">>>\n", &mut |fr| out.push(fr));
        for _ in 0..70 {
            f.push(&line, &mut |fr| out.push(fr));
            f.push(b"\n", &mut |fr| out.push(fr));
        }
        f.push(b"<<<\n>>>\nok=1\n<<<\n", &mut |fr| out.push(fr));
        assert_eq!(out, vec![b">>>\nok=1\n<<<\n".to_vec()]);
        assert_eq!(f.resyncs, 1);
        // One endless line without newlines.
        let mut f = Framer::default();
        let mut out = Vec::new();
        f.push(b">>>\n", &mut |fr| out.push(fr));
        for _ in 0..100 {
            f.push(&line, &mut |fr| out.push(fr));
        }
        f.push(b"\n<<<\n>>>\nok=2\n<<<\n", &mut |fr| out.push(fr));
        assert_eq!(out, vec![b">>>\nok=2\n<<<\n".to_vec()]);
        assert!(f.buf.len() <= MAX_FRAME);
    }

    #[test]
    fn unsupported_baud() {
        let e = Port::open(Path::new("/dev/null"), 1200, "serial /dev/null").err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some(
                "serial /dev/null: unsupported baud rate 1200 (9600 19200 38400 57600 115200 230400 460800)"
            )
        );
        let e = Port::open(Path::new("/dev/null"), 19200, "serial /dev/null")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.starts_with("serial /dev/null: not a terminal"), "{e}");
    }
}
