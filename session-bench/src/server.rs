//! What a phase cost the Redis server: the CPU time of its main thread (`INFO cpu`) and the
//! commands it ran (`INFO commandstats`), read before and after the phase. Throughput
//! measures the client; this measures what a deployment whose bound is Redis' CPU pays per
//! operation, which is what the compare-and-swap target is about.
//!
//! The time comes from `INFO cpu`, not from commandstats' `usec`: a script's `usec` already
//! includes the commands it calls, which commandstats counts again under their own names,
//! and `usec` leaves out reading, parsing and answering the request, which a script call
//! pays like any command. The command count does include what scripts call (a script
//! reading and writing the session counts as three). The server must be the bench's alone
//! for these to mean anything: every client's commands count.

use anyhow::{Context, Result};
use fred::prelude::{Client, ClientLike, Config};
use fred::types::InfoKind;

/// A connection of its own to the server, for `INFO` only.
pub struct ServerMeter {
    client: Client,
}

/// The server's totals at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CommandTotals {
    /// Commands run, every kind but `INFO` (the meter's own).
    pub calls: u64,
    /// Microseconds of CPU (user and system) the server's main thread has used.
    pub usec: u64,
}

/// What one phase cost the server, per successful operation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServerCost {
    /// Microseconds of the server's main thread per operation.
    pub usec_per_op: f64,
    /// Commands per operation (a script counts once, plus each command it calls).
    pub commands_per_op: f64,
}

impl ServerMeter {
    /// Connects to the Redis server at `url`.
    pub async fn connect(url: &str) -> Result<Self> {
        let client = Client::new(Config::from_url(url)?, None, None, None);
        client.init().await.context("connecting the server meter")?;
        Ok(Self { client })
    }

    /// The server's command totals now.
    pub async fn totals(&self) -> Result<CommandTotals> {
        let cpu: String = self.client.info(Some(InfoKind::Cpu)).await?;
        let commands: String = self.client.info(Some(InfoKind::CommandStats)).await?;
        Ok(CommandTotals {
            calls: parse_commandstats(&commands),
            usec: parse_main_thread_cpu(&cpu).context("INFO cpu has no main-thread times")?,
        })
    }
}

impl CommandTotals {
    /// The cost of `ops` operations that ran between `self` and `after`.
    pub fn cost_until(self, after: Self, ops: u64) -> Option<ServerCost> {
        (ops > 0).then(|| ServerCost {
            usec_per_op: after.usec.saturating_sub(self.usec) as f64 / ops as f64,
            commands_per_op: after.calls.saturating_sub(self.calls) as f64 / ops as f64,
        })
    }
}

/// Sums `calls=` over the `cmdstat_*` lines of `INFO commandstats`, leaving out `INFO`
/// itself.
fn parse_commandstats(info: &str) -> u64 {
    info.lines()
        .filter_map(|line| line.trim().split_once(':'))
        .filter(|(name, _)| name.starts_with("cmdstat_") && *name != "cmdstat_info")
        .flat_map(|(_, fields)| fields.split(','))
        .filter_map(|field| field.strip_prefix("calls="))
        .map(|n| n.parse::<u64>().unwrap_or(0))
        .sum()
}

/// The main thread's user plus system CPU time in microseconds, from `INFO cpu` (Redis 6.2
/// and later report it apart from the I/O threads').
fn parse_main_thread_cpu(info: &str) -> Option<u64> {
    let seconds = |key: &str| {
        info.lines()
            .filter_map(|line| line.trim().split_once(':'))
            .find(|(name, _)| *name == key)
            .and_then(|(_, value)| value.parse::<f64>().ok())
    };
    let total = seconds("used_cpu_user_main_thread")? + seconds("used_cpu_sys_main_thread")?;
    Some((total * 1e6).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_every_command_but_info() {
        let info = "# Commandstats\r\n\
            cmdstat_get:calls=10,usec=20,usec_per_call=2.00,rejected_calls=0,failed_calls=0\r\n\
            cmdstat_evalsha:calls=5,usec=70,usec_per_call=14.00,rejected_calls=0,failed_calls=1\r\n\
            cmdstat_info:calls=3,usec=300,usec_per_call=100.00,rejected_calls=0,failed_calls=0\r\n";
        assert_eq!(parse_commandstats(info), 15);
    }

    #[test]
    fn reads_the_main_threads_cpu() {
        let info = "# CPU\r\nused_cpu_sys:9.5\r\nused_cpu_user:9.5\r\n\
            used_cpu_sys_main_thread:1.250000\r\nused_cpu_user_main_thread:0.750001\r\n";
        assert_eq!(parse_main_thread_cpu(info), Some(2_000_001));
        assert_eq!(parse_main_thread_cpu("used_cpu_sys:1.0\r\n"), None);
    }

    #[test]
    fn costs_per_operation() {
        let before = CommandTotals {
            calls: 5,
            usec: 100,
        };
        let after = CommandTotals {
            calls: 25,
            usec: 190,
        };
        let cost = before.cost_until(after, 10).unwrap();
        assert_eq!(cost.usec_per_op, 9.0);
        assert_eq!(cost.commands_per_op, 2.0);
        assert_eq!(before.cost_until(after, 0), None);
    }
}
