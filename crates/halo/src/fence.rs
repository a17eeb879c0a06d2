//! The runtime side of fencing: carries out the engine's `Fence` on a worker thread (a
//! fence may take a minute, a meatware fence until the operator answers; never the
//! heartbeat thread) and reports `FenceDone` through the auxiliary channel and its wake-up
//! pipe. One fence per target at a time: a request for a node already being fenced waits
//! for that one's answer (the engine asks again if it failed).
use halo_core::Event;
use halo_host::fence::{Device, Meatware};
use halo_host::{Level, Logger};
use std::collections::BTreeSet;
use std::os::fd::OwnedFd;
use std::sync::{mpsc, Arc, Mutex};

pub struct Fencing {
    devices: Arc<Vec<Device>>,
    me: String,
    fencers: Vec<String>,
    tx: mpsc::Sender<Event>,
    wake: Arc<OwnedFd>,
    logger: Arc<Logger>,
    pub meatware: Arc<Meatware>,
    running: Arc<Mutex<BTreeSet<String>>>,
}

impl Fencing {
    pub fn new(
        devices: Vec<Device>,
        me: String,
        fencers: Vec<String>,
        tx: mpsc::Sender<Event>,
        wake: Arc<OwnedFd>,
        logger: Arc<Logger>,
    ) -> Fencing {
        Fencing {
            devices: Arc::new(devices),
            me,
            fencers,
            tx,
            wake,
            logger,
            meatware: Arc::new(Meatware::default()),
            running: Arc::default(),
        }
    }

    /// What the engine needs to know: who can fence.
    pub fn core_config(&self) -> halo_core::FencingConfig {
        halo_core::FencingConfig { fencers: self.fencers.clone(), ..halo_core::FencingConfig::all(&[]) }
    }

    pub fn fence(&self, node: &str) {
        if let Ok(mut r) = self.running.lock() {
            if !r.insert(node.to_string()) {
                self.logger.log(Level::Info, &format!("STONITH of {node} already under way"));
                return;
            }
        }
        let target = node.to_string();
        let (devices, me, node) = (Arc::clone(&self.devices), self.me.clone(), node.to_string());
        let (tx, wake, logger) = (self.tx.clone(), Arc::clone(&self.wake), Arc::clone(&self.logger));
        let (meatware, running) = (Arc::clone(&self.meatware), Arc::clone(&self.running));
        logger.log(Level::Warn, &format!("STONITH: fencing node {node}"));
        let spawned = std::thread::Builder::new().name("halo-fence".into()).spawn(move || {
            halo_host::rt::set_normal();
            let mut log = |s: String| logger.log(Level::Warn, &s);
            let r = halo_host::fence::fence(&devices, &me, &node, &meatware, &mut log);
            if let Ok(mut g) = running.lock() {
                g.remove(&node);
            }
            let ev = match r {
                Ok(detail) => Event::FenceDone { node, ok: true, detail },
                Err(detail) => Event::FenceDone { node, ok: false, detail },
            };
            let _ = tx.send(ev);
            let _ = nix::unistd::write(&*wake, &[1u8]);
        });
        if let Err(e) = spawned {
            let node = target;
            self.logger.log(Level::Crit, &format!("cannot start a fencing thread: {e}"));
            if let Ok(mut g) = self.running.lock() {
                g.remove(&node);
            }
            let _ =
                self.tx.send(Event::FenceDone { node, ok: false, detail: format!("no fencing thread: {e}") });
            let _ = nix::unistd::write(&*self.wake, &[1u8]);
        }
    }
}
