//! The days of a run: outages begin, devices join, send their uplinks through the
//! gateways that hear them and get Class C downlinks queued; outages end; clocks move on.

use std::time::Duration;

use anyhow::{Result, bail};
use entente_gateway::json::PushData;
use entente_sim::rxpk;
use serde_json::json;

use super::WAIT;
use super::federation::Federation;
use crate::process::NodeProcess;

impl Federation {
    /// One day: outages start, joins, uplinks, Class C downlinks; outages end; every
    /// node's clock moves a day.
    pub async fn day(&mut self, d: u32) -> Result<String> {
        if d > 0 {
            // Everything of the day before has arrived (and is counted) before midnight.
            self.settle(Duration::from_secs(10)).await;
            self.advance(86_400).await?;
        }
        let date = self.today().await?;
        self.days_run.push(date);
        let mut notes = self.begin_outages(d).await?;
        let mut sent = 0u64;
        for i in 0..self.devices.len() {
            sent += self.device_day(i, d).await?;
        }
        notes.extend(self.end_outages(d).await?);
        Ok(format!(
            "day {} ({date}): {sent} uplinks sent{}",
            d + 1,
            if notes.is_empty() {
                String::new()
            } else {
                format!("; {}", notes.join("; "))
            }
        ))
    }

    /// Kills (-9) the nodes whose outage is on day `d`.
    async fn begin_outages(&mut self, d: u32) -> Result<Vec<String>> {
        let mut notes = Vec::new();
        for o in self.sc.outages.clone().iter().filter(|o| o.day == d) {
            let m = self.sc.member_index(&o.member)?;
            if let Some(n) = self.nodes[m].take() {
                n.kill9().await?;
                notes.push(format!("{} node killed (-9)", o.member));
            }
        }
        Ok(notes)
    }

    /// Restarts the nodes whose outage was on day `d` and waits for the federation.
    async fn end_outages(&mut self, d: u32) -> Result<Vec<String>> {
        let mut notes = Vec::new();
        for o in self.sc.outages.clone().iter().filter(|o| o.day == d) {
            let m = self.sc.member_index(&o.member)?;
            // Uplinks heard meanwhile by neighbours wait for it, then flow on reconnection.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let n = NodeProcess::start(&self.exe, &self.dirs[m]).await?;
            self.nodes[m] = Some(n);
            self.connect_gateways(m, false).await?;
            self.wait_connected().await?;
            notes.push(format!("{} node restarted, federation re-formed", o.member));
        }
        Ok(notes)
    }

    /// Device `i`'s day `d`: its join if it has none yet, its uplinks, its downlinks.
    /// Returns the uplinks sent (none if it could not join today).
    async fn device_day(&mut self, i: usize, d: u32) -> Result<u64> {
        let g = self.sc.devices[self.devices[i].group].clone();
        let home = self.sc.member_index(&g.member)?;
        if !self.devices[i].joined && !self.join(i, d, home).await? {
            return Ok(0);
        }
        for k in 0..g.messages_per_day {
            self.uplink(i, d, k, home).await?;
        }
        if g.downlinks_per_day > 0 && self.nodes[home].is_some() {
            self.queue_downlinks(i, home, g.downlinks_per_day).await?;
        }
        Ok(g.messages_per_day.into())
    }

    /// OTAA through the first gateway of the first member that hears device `i`;
    /// false if that member's node or the home node is down.
    async fn join(&mut self, i: usize, d: u32, home: usize) -> Result<bool> {
        let m = self.hearing(self.devices[i].group, d, 0)[0];
        if self.nodes[m].is_none() || self.nodes[home].is_none() {
            return Ok(false);
        }
        // Downlinks for other devices may wait at this gateway: skip them.
        while self.gws[m][0]
            .next_downlink(Duration::from_millis(1))
            .await
            .is_ok()
        {}
        let jr = self.devices[i].sim.join_request();
        self.push(&[(m, 0)], &jr).await?;
        self.accept_join(i, m).await?;
        self.devices[i].joined = true;
        self.joins += 1;
        Ok(true)
    }

    /// Waits at member `m`'s first gateway for device `i`'s join accept.
    async fn accept_join(&mut self, i: usize, m: usize) -> Result<()> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let dl = self.gws[m][0].next_downlink(WAIT).await?;
            if dl.phy_payload.first().is_some_and(|h| h >> 5 == 1) {
                self.devices[i].sim.accept_join(&dl.phy_payload)?;
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("no join accept for {}", self.devices[i].eui);
            }
        }
    }

    /// Device `i`'s uplink `k` of day `d`, through every live gateway that hears it, or
    /// counted as lost to the outage if it cannot reach its home node.
    async fn uplink(&mut self, i: usize, d: u32, k: u32, home: usize) -> Result<()> {
        let heard = self.hearing(self.devices[i].group, d, k as usize);
        let gws: Vec<(usize, usize)> = heard
            .iter()
            .filter(|m| self.nodes[**m].is_some())
            .flat_map(|m| (0..self.gws[*m].len()).map(move |g| (*m, g)))
            .collect();
        let phy = self.devices[i]
            .sim
            .uplink(2, &[0x01, d as u8, k as u8], false, 3, 0)?;
        // A frame reaches home if a live node hears it and home is up, or if a
        // visited node hears it (it waits there while home is down).
        let reaches = gws.iter().any(|(m, _)| *m != home || self.nodes[home].is_some());
        if gws.is_empty() || !reaches {
            self.lost_to_outage += 1;
            return Ok(());
        }
        self.push(&gws, &phy).await?;
        self.expected[home] += 1;
        Ok(())
    }

    /// Queues `count` Class C downlinks for device `i` on its home node.
    async fn queue_downlinks(&mut self, i: usize, home: usize, count: u32) -> Result<()> {
        for _ in 0..count {
            let path = format!("/v1/devices/{}/queue", self.devices[i].eui);
            if self
                .node(home)?
                .post_json(&path, &json!({"fport": 10, "data": "01"}))
                .await
                .is_ok()
            {
                self.downlinks_requested += 1;
            }
        }
        Ok(())
    }

    /// The same frame received by each of `gws` (member, gateway), weaker at each one.
    async fn push(&mut self, gws: &[(usize, usize)], phy: &[u8]) -> Result<()> {
        self.tmst = self.tmst.wrapping_add(3_000_000);
        for (k, (m, g)) in gws.iter().enumerate() {
            let body = PushData {
                rxpk: vec![rxpk(
                    phy,
                    868.1,
                    "SF9BW125",
                    -95 - 4 * k as i32,
                    6.0 - 2.0 * k as f32,
                    self.tmst,
                )],
                stat: None,
            };
            self.gws[*m][*g].push(&body, WAIT).await?;
        }
        Ok(())
    }

    /// The members whose gateways hear a device of `group` on day `d`.
    fn hearing(&self, group: usize, day: u32, n: usize) -> Vec<usize> {
        let g = &self.sc.devices[group];
        let all: Vec<usize> = g
            .heard_by
            .iter()
            .filter_map(|m| self.sc.member_index(m).ok())
            .collect();
        // A vehicle spends the day in one coverage area and the next day in the next one.
        let _ = n;
        if g.mobile {
            vec![all[day as usize % all.len()]]
        } else {
            all
        }
    }
}
