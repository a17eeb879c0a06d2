//! The state of one real server, from its check results, and the per-real-server checker.

use std::collections::VecDeque;
use std::sync::Arc;

use super::{run_check, CheckKind, CheckResult, CheckSpec};

/// How results become a state. `fall` is ldirectord's `failurecount`; `rise` is 1 in
/// ldirectord (one success brings a server back) and configurable here for flap damping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthPolicy {
    /// Consecutive successes that bring a down server up (at least 1).
    pub rise: u32,
    /// Consecutive failures that take an up server down (at least 1).
    pub fall: u32,
    /// Results kept for status (the most recent last).
    pub history: usize,
}

impl Default for HealthPolicy {
    /// ldirectord's defaults: rise 1, fall (failurecount) 1; ten results kept.
    fn default() -> Self {
        HealthPolicy { rise: 1, fall: 1, history: 10 }
    }
}

impl HealthPolicy {
    /// ldirectord's semantics with this `failurecount`.
    pub fn ldirectord(failurecount: u32) -> Self {
        HealthPolicy { fall: failurecount.max(1), ..HealthPolicy::default() }
    }

    /// The policy of a virtual service: its effective `failurecount`, rise 1.
    pub fn for_virtual(v: &halo_config::VirtualService, g: &halo_config::Globals) -> Self {
        HealthPolicy::ldirectord(v.effective_failurecount(g))
    }
}

/// A change of state, to act on (add the real server to the virtual service, or take it out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Up,
    Down,
}

/// Health of one real server. It starts **down**, as in ldirectord, which forces new real
/// servers down until their first successful check; with `rise` 1 the first success brings
/// it up. While up, failures short of `fall` are "soft failures" (the server stays in); a
/// success clears them. While down, successes short of `rise` leave it out; a failure clears
/// them.
#[derive(Debug, Clone)]
pub struct Health {
    policy: HealthPolicy,
    up: bool,
    successes: u32,
    failures: u32,
    checks: u64,
    history: VecDeque<CheckResult>,
}

impl Health {
    pub fn new(policy: HealthPolicy) -> Health {
        let policy =
            HealthPolicy { rise: policy.rise.max(1), fall: policy.fall.max(1), history: policy.history };
        Health { policy, up: false, successes: 0, failures: 0, checks: 0, history: VecDeque::new() }
    }

    pub fn policy(&self) -> HealthPolicy {
        self.policy
    }

    /// Takes one result into account; returns the change of state it causes, if any.
    pub fn record(&mut self, result: CheckResult) -> Option<Transition> {
        self.checks += 1;
        let ok = result.up;
        if self.policy.history > 0 {
            if self.history.len() == self.policy.history {
                self.history.pop_front();
            }
            self.history.push_back(result);
        }
        if ok {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
            if !self.up && self.successes >= self.policy.rise {
                self.up = true;
                return Some(Transition::Up);
            }
        } else {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
            if self.up && self.failures >= self.policy.fall {
                self.up = false;
                return Some(Transition::Down);
            }
        }
        None
    }

    /// Forces a state without a check (a maintenance file, an operator): counters restart.
    pub fn force(&mut self, up: bool) -> Option<Transition> {
        self.successes = 0;
        self.failures = 0;
        if self.up == up {
            return None;
        }
        self.up = up;
        Some(if up { Transition::Up } else { Transition::Down })
    }

    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Consecutive successes up to now (0 after a failure).
    pub fn successes(&self) -> u32 {
        self.successes
    }

    /// Consecutive failures up to now (0 after a success).
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Results recorded since the start.
    pub fn checks(&self) -> u64 {
        self.checks
    }

    /// The last results, oldest first.
    pub fn history(&self) -> impl Iterator<Item = &CheckResult> {
        self.history.iter()
    }

    pub fn last(&self) -> Option<&CheckResult> {
        self.history.back()
    }

    /// `up`, `up (soft failure 2/3)`, `down`, `down (success 1/2)`, `down (not checked yet)`.
    pub fn status(&self) -> String {
        match (self.up, self.checks) {
            (false, 0) => "down (not checked yet)".to_string(),
            (true, _) if self.failures > 0 => {
                format!("up (soft failure {}/{})", self.failures, self.policy.fall)
            }
            (true, _) => "up".to_string(),
            (false, _) if self.successes > 0 => {
                format!("down (success {}/{})", self.successes, self.policy.rise)
            }
            (false, _) => "down".to_string(),
        }
    }
}

/// One real server's checks: its spec, its [`Health`], and for `checktype=N` the alternation
/// of connect and negotiate checks (ldirectord: a negotiate check first; after a successful
/// one, N connect checks; a failed connect check makes the next check a negotiate one).
#[derive(Debug, Clone)]
pub struct Checker {
    // Shared, so that a check run in a task of its own takes the spec without copying it.
    spec: Arc<CheckSpec>,
    connect: Option<Arc<CheckSpec>>,
    /// Connect checks since the last successful negotiate check; `None`: negotiate next.
    connects: Option<u32>,
    health: Health,
}

impl Checker {
    pub fn new(spec: CheckSpec, policy: HealthPolicy) -> Checker {
        let connect = spec.combined.map(|c| {
            let mut s = spec.clone();
            // A connect check on a UDP service is a ping, as for checktype=connect.
            s.kind =
                if spec.transport == super::Transport::Udp { CheckKind::Ping } else { CheckKind::Connect };
            s.timeout = c.connect_timeout;
            s.combined = None;
            Arc::new(s)
        });
        Checker { spec: Arc::new(spec), connect, connects: None, health: Health::new(policy) }
    }

    pub fn spec(&self) -> &CheckSpec {
        &self.spec
    }

    pub fn health(&self) -> &Health {
        &self.health
    }

    pub fn health_mut(&mut self) -> &mut Health {
        &mut self.health
    }

    /// The spec the next [`Checker::check`] runs.
    pub fn next_spec(&self) -> &CheckSpec {
        self.next_shared()
    }

    /// [`Checker::next_spec`], shared (a reference count, no copy): for a check run in a
    /// task of its own, its result given back to [`Checker::record`].
    pub fn next_spec_shared(&self) -> Arc<CheckSpec> {
        Arc::clone(self.next_shared())
    }

    fn next_shared(&self) -> &Arc<CheckSpec> {
        match (&self.connect, self.connects, self.spec.combined) {
            (Some(connect), Some(n), Some(c)) if n < c.connects => connect,
            _ => &self.spec,
        }
    }

    /// Runs the next check and records it.
    pub async fn check(&mut self) -> (CheckResult, Option<Transition>) {
        let result = run_check(self.next_spec()).await;
        let transition = self.record(result.clone());
        (result, transition)
    }

    /// Records a result of [`Checker::next_spec`] run elsewhere.
    pub fn record(&mut self, result: CheckResult) -> Option<Transition> {
        if self.spec.combined.is_some() {
            let negotiate = Arc::ptr_eq(self.next_shared(), &self.spec);
            self.connects = match (negotiate, result.up) {
                (true, true) => Some(0),
                (true, false) => None,
                (false, true) => self.connects.map(|n| n + 1),
                (false, false) => None,
            };
        }
        self.health.record(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn result(up: bool) -> CheckResult {
        CheckResult { kind: CheckKind::Connect, up, reason: String::new(), duration: Duration::ZERO }
    }

    #[test]
    fn ldirectord_failurecount_3() {
        let mut h = Health::new(HealthPolicy::ldirectord(3));
        assert_eq!(h.status(), "down (not checked yet)");
        assert_eq!(h.record(result(false)), None);
        assert_eq!(h.record(result(true)), Some(Transition::Up));
        assert_eq!(h.record(result(false)), None);
        assert_eq!(h.status(), "up (soft failure 1/3)");
        assert_eq!(h.record(result(false)), None);
        assert_eq!(h.record(result(true)), None);
        assert_eq!(h.failures(), 0);
        assert_eq!(h.record(result(false)), None);
        assert_eq!(h.record(result(false)), None);
        assert_eq!(h.record(result(false)), Some(Transition::Down));
        assert_eq!(h.record(result(false)), None);
        assert!(!h.is_up());
        assert_eq!(h.record(result(true)), Some(Transition::Up));
    }

    #[test]
    fn rise_and_history() {
        let mut h = Health::new(HealthPolicy { rise: 2, fall: 1, history: 3 });
        assert_eq!(h.record(result(true)), None);
        assert_eq!(h.status(), "down (success 1/2)");
        assert_eq!(h.record(result(false)), None);
        assert_eq!(h.record(result(true)), None);
        assert_eq!(h.record(result(true)), Some(Transition::Up));
        assert_eq!(h.record(result(false)), Some(Transition::Down));
        assert_eq!(h.history().count(), 3);
        assert_eq!(h.checks(), 5);
        assert!(!h.last().unwrap().up);
        assert_eq!(h.force(true), Some(Transition::Up));
        assert_eq!(h.force(true), None);
    }

    #[test]
    fn zero_is_one() {
        let mut h = Health::new(HealthPolicy { rise: 0, fall: 0, history: 0 });
        assert_eq!(h.record(result(true)), Some(Transition::Up));
        assert_eq!(h.record(result(false)), Some(Transition::Down));
        assert_eq!(h.history().count(), 0);
    }
}
