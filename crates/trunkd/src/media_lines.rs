//! A call's per-minute media report (SPEC §4, §5.3): the relay's counters
//! and quality observer turned into a media metric log line, and the same
//! figures into the Prometheus media families.

use std::io::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use trunkd_core::quality::{side_mos, CallIdentity, DirectionStats, MediaMetricLine, SideStats};
use trunkd_media::{QualityObserver, RelayStats};

use crate::metrics::{MediaLabels, Metrics, SideLabels, MEDIA_DIRECTIONS};

/// Which relay leg faces the customer: the A leg of a termination call
/// (the customer called), the B leg of an origination call.
#[derive(Clone, Copy)]
pub struct Sides {
    pub customer: trunkd_media::Leg,
    pub remote: trunkd_media::Leg,
}

/// Cumulative figures of one side from a relay snapshot.
pub fn side(stats: &RelayStats<QualityObserver>, leg: trunkd_media::Leg) -> SideStats {
    // The line describes the call's first audio stream, the one the
    // observer measures; other streams (video) are in the relay's stats only.
    let l = stats.quality_leg(leg);
    let q = &stats.observer;
    let rx = q.received(leg);
    let to_vc = DirectionStats {
        rtp_packets: rx.packets(),
        // Bytes as they crossed the wire, like the from-VC side: on an
        // SRTP leg that includes the authentication tag.
        rtp_bytes: l.rx.rtp_bytes,
        rtcp_packets: l.rx.rtcp_packets,
        rtcp_bytes: l.rx.rtcp_bytes,
        packets_lost: (rx.packets() > 0).then(|| rx.packets_lost()),
        jitter_us: (rx.packets() > 1).then(|| rx.jitter_us()),
    };
    let from_vc = DirectionStats {
        rtp_packets: l.tx.rtp_packets,
        rtp_bytes: l.tx.rtp_bytes,
        rtcp_packets: l.tx.rtcp_packets,
        rtcp_bytes: l.tx.rtcp_bytes,
        packets_lost: q.reported(leg).map(|r| r.cumulative_lost),
        jitter_us: q.reported_jitter_us(leg),
    };
    let rtt = q.rtt(leg);
    SideStats {
        to_vc,
        from_vc,
        rtt,
        mos: side_mos(rtt, &to_vc, &from_vc),
    }
}

/// Everything a line needs besides the figures.
pub struct LineContext<'a> {
    pub identity: CallIdentity<'a>,
    /// The VC's log file when `enable_media_metric_logs` is on.
    pub log_file: Option<&'a Path>,
    pub metrics: &'a Metrics,
}

/// Writes one line (when enabled) and feeds Prometheus with what changed
/// since `previous` (counters) and this minute's quality (histograms).
pub fn report(
    ctx: &LineContext<'_>,
    customer: &SideStats,
    remote: &SideStats,
    previous: &mut Option<(SideStats, SideStats)>,
) {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    if let Some(path) = ctx.log_file {
        let line = MediaMetricLine::new(&ctx.identity, ms, customer, remote);
        if let Ok(mut json) = serde_json::to_vec(&line) {
            json.push(b'\n');
            if let Err(e) = append(path, &json) {
                tracing::warn!(path = %path.display(), error = %e, "media metric log write failed");
            }
        }
    }
    let m = ctx.metrics;
    let vc = ctx.identity.voice_connector_id;
    let region = ctx.identity.aws_region;
    let counters = m.media_counters(vc, region);
    let prev = previous.unwrap_or_default();
    let directions = [
        (customer.to_vc, prev.0.to_vc),
        (customer.from_vc, prev.0.from_vc),
        (remote.to_vc, prev.1.to_vc),
        (remote.from_vc, prev.1.from_vc),
    ];
    for (((now, before), c), direction) in directions
        .into_iter()
        .zip(&counters.directions)
        .zip(MEDIA_DIRECTIONS)
    {
        let d = now.since(&before);
        c.rtp_packets.inc_by(d.rtp_packets);
        c.rtp_bytes.inc_by(d.rtp_bytes);
        c.rtcp_packets.inc_by(d.rtcp_packets);
        c.rtcp_bytes.inc_by(d.rtcp_bytes);
        c.packets_lost.inc_by(d.packets_lost.unwrap_or(0));
        if let Some(j) = now.jitter_us {
            let labels = MediaLabels {
                voice_connector_id: vc.to_owned(),
                region: region.to_owned(),
                direction,
            };
            m.jitter.get_or_create(&labels).observe(j as f64 / 1e6);
        }
    }
    for (side_name, s) in [("customer", customer), ("remote", remote)] {
        if s.rtt.is_none() && s.mos.is_none() {
            continue;
        }
        let labels = SideLabels {
            voice_connector_id: vc.to_owned(),
            region: region.to_owned(),
            side: side_name,
        };
        if let Some(rtt) = s.rtt {
            m.rtt.get_or_create(&labels).observe(rtt.as_secs_f64());
        }
        if let Some(mos) = s.mos {
            m.mos.get_or_create(&labels).observe(mos);
        }
    }
    *previous = Some((*customer, *remote));
}

fn append(path: &Path, data: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    // One write per line: O_APPEND keeps concurrent calls' lines whole.
    f.write_all(data)
}
