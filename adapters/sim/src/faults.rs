//! Fault injection. Resets, half-open connections, broker restarts and clock jumps each run on
//! a Poisson clock of their own ([`Faults`] gives the rates); lost sessions, refused CONNACKs
//! and duplicate deliveries ride on an occasion instead (a restart, a CONNECT, a command
//! publish) and are drawn where it happens, in `broker`.

use crate::network::{ConnId, Direction};
use crate::world::{micros, SimEvent, World, START};
use crate::{Faults, FAULT_KINDS};

/// A kind of fault, in the order of [`FAULT_KINDS`] and `SimStats::faults`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    Reset,
    HalfOpen,
    BrokerRestart,
    SessionsLost,
    ClockJump,
    RefusedConnack,
    Duplicate,
}

impl Fault {
    /// The faults with a clock of their own, in the order their first draws are made: changing
    /// it changes every seed's run.
    const TIMED: [Self; 4] = [Self::Reset, Self::HalfOpen, Self::BrokerRestart, Self::ClockJump];

    /// Occurrences per hour of simulated time for the whole world; zero for the faults that
    /// ride on an occasion, which are never scheduled.
    fn rate(self, faults: &Faults, nodes: usize) -> f64 {
        let n = nodes as f64;
        match self {
            Self::Reset => faults.resets_per_hour * n,
            Self::HalfOpen => faults.half_opens_per_hour * n,
            Self::BrokerRestart => faults.broker_restarts_per_hour,
            Self::ClockJump => faults.clock_jumps_per_hour * n,
            Self::SessionsLost | Self::RefusedConnack | Self::Duplicate => 0.0,
        }
    }
}

// `SimStats::faults` is indexed by `Fault as usize`: one name per kind.
const _: () = assert!(FAULT_KINDS.len() == Fault::Duplicate as usize + 1);

impl World<'_, '_> {
    pub(crate) fn count(&mut self, fault: Fault) {
        self.stats.faults[fault as usize] += 1;
    }

    /// Schedules the next `fault` of its kind, if its rate is not zero.
    fn schedule_fault(&mut self, fault: Fault) {
        let dt = self.rng.exp_micros(fault.rate(&self.config.faults, self.nodes.len()));
        if dt != u64::MAX {
            self.at(self.now + dt, SimEvent::Fault(fault));
        }
    }

    /// The first of each timed fault, and the scheduled broker restart if there is one.
    pub(crate) fn schedule_first_faults(&mut self) {
        for fault in Fault::TIMED {
            self.schedule_fault(fault);
        }
        if let Some(at) = self.config.broker_restart_at {
            self.at(START + micros(at), SimEvent::Fault(Fault::BrokerRestart));
        }
    }

    /// A timed fault strikes (if faults are still on), and the next of its kind is scheduled.
    pub(crate) fn fault(&mut self, fault: Fault) {
        if !self.faulty() {
            return;
        }
        self.schedule_fault(fault);
        match fault {
            Fault::Reset | Fault::HalfOpen => self.break_a_connection(fault),
            Fault::BrokerRestart => {
                if self.broker.up {
                    self.restart_broker();
                }
            }
            Fault::ClockJump => self.jump_a_clock(),
            Fault::SessionsLost | Fault::RefusedConnack | Fault::Duplicate => {}
        }
    }

    /// Resets, or half-opens, a connection both sides still hold, if there is one.
    fn break_a_connection(&mut self, fault: Fault) {
        let live: Vec<ConnId> =
            self.conns.iter().filter(|(_, c)| c.node_open && c.broker_open).map(|(&id, _)| id).collect();
        if live.is_empty() {
            return;
        }
        let id = live[self.rng.below(live.len() as u64) as usize];
        self.count(fault);
        if fault == Fault::Reset {
            return self.reset(id);
        }
        let dir = if self.rng.below(2) == 0 { Direction::ToNode } else { Direction::ToBroker };
        self.log("fault", || {
            let silent = match dir {
                Direction::ToNode => "broker->node",
                Direction::ToBroker => "node->broker",
            };
            format!("conn {id} half-open: {silent} silent")
        });
        if let Some(conn) = self.conns.get_mut(&id) {
            let stream = conn.stream_mut(dir);
            stream.silent = true;
            stream.in_flight.clear();
        }
    }

    fn restart_broker(&mut self) {
        self.count(Fault::BrokerRestart);
        let lose = self.rng.chance(self.config.faults.lose_sessions);
        let down = self.rng.range(1_000_000, 20_000_000);
        self.log("fault", || {
            format!("broker restarts, down {:.3}s, sessions {}", down as f64 / 1e6, if lose { "lost" } else { "kept" })
        });
        let generation = self.broker_crash(lose);
        if lose {
            self.count(Fault::SessionsLost);
        }
        self.at(self.now + down, SimEvent::BrokerUp { generation });
    }

    /// One node's clock jumps forward; the node hears of it at once, as from a timer.
    fn jump_a_clock(&mut self) {
        let i = self.rng.below(self.nodes.len() as u64) as usize;
        let jump = self.rng.range(1, micros(self.config.faults.max_clock_jump).max(1));
        self.count(Fault::ClockJump);
        self.nodes[i].clock_offset += jump;
        self.refresh_deadline(i);
        // The heartbeat promise is about time that passed, not about the clock's jump.
        if let Some(due) = &mut self.nodes[i].heartbeat_due_by {
            *due += jump;
        }
        self.log("fault", || format!("n{i} clock jumps {:.3}s forward", jump as f64 / 1e6));
        self.drive(i, |node, now| node.handle_timeout(now));
    }

    /// The quiet tail begins: the broker comes back, and half-open connections are reset.
    pub(crate) fn faults_off(&mut self) {
        self.log("fault", || "faults off: quiet tail".into());
        self.broker_up();
        // A half-open stream cannot heal mid-packet: reset it so both sides start over.
        let half: Vec<ConnId> = self.conns.iter().filter(|(_, c)| c.half_open()).map(|(&id, _)| id).collect();
        for id in half {
            self.reset(id);
        }
    }
}
