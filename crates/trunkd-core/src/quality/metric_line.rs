//! The media metric log line (SPEC §5.3): one JSON object per call per
//! minute, and one at the call's end.
//!
//! Field names are fixed by SPEC §5.3 (they match the managed service's
//! log). Units: `event_timestamp` in milliseconds since the Unix epoch;
//! packet and byte counts as integers; `*_jitter` and `rtt_*` in
//! microseconds (integers); `mos_*` 1.0–4.4 rounded to two decimals.
//!
//! # Absent values are `null`
//!
//! A value trunkd does not know is written as `null`, never omitted, so
//! every line has the same 37 keys in the same order (consumers can index
//! columns, and "not measured" is told apart from "zero"):
//!
//! - `rtt_*` and `mos_*` when that side sends no RTCP (SPEC §4), or its
//!   reports reference no SR trunkd saw;
//! - `vc2cust_packets_lost`/`vc2cust_jitter` (and `vc2rem_*`): these
//!   describe what the *peer* received from trunkd, known only from the
//!   peer's report blocks; `null` until one arrives;
//! - `cust2vc_jitter` (and `rem2vc_jitter`) before any packet arrived;
//! - `from_country`/`to_country` when the number has no known country
//!   (e.g. a non-E.164 user in a SIPREC session).
//!
//! # Where each figure comes from
//!
//! - `X2vc_*` (trunkd receives): RTP counters, loss and jitter from the
//!   leg's [`RtpRxStats`](super::RtpRxStats), RTCP counters from the
//!   relay;
//! - `vc2X_*` (trunkd sends): RTP/RTCP counters of what trunkd sent;
//!   loss = the peer's latest report-block cumulative loss about trunkd's
//!   stream clamped at 0, jitter = that block's jitter converted to µs
//!   with the stream's clock rate;
//! - `rtt_btwn_vc_and_X`: [`SrLog::rtt_for_block`](super::SrLog) on X's
//!   report blocks; `mos_btwn_vc_and_X`: [`side_mos`].
//!
//! All counters are cumulative over the call (SPEC §4); see
//! [`MetricsTicker`](super::MetricsTicker).

use std::time::Duration;

use serde::Serialize;

use super::mos::{loss_percent, mos};

/// What trunkd knows about one direction of one side, cumulative over the
/// call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirectionStats {
    /// RTP packets.
    pub rtp_packets: u64,
    /// RTP octets (UDP payload, RTP header included).
    pub rtp_bytes: u64,
    /// RTCP packets (datagrams).
    pub rtcp_packets: u64,
    /// RTCP octets.
    pub rtcp_bytes: u64,
    /// RTP packets lost in this direction; `None` if unknown.
    pub packets_lost: Option<u64>,
    /// Interarrival jitter in microseconds; `None` if unknown.
    pub jitter_us: Option<u64>,
}

impl DirectionStats {
    /// The change since an earlier snapshot of the same direction:
    /// counters subtracted (saturating at 0), jitter as now (it is a
    /// running estimate, not a counter). Useful for a MOS over the last
    /// interval rather than the whole call.
    pub fn since(&self, earlier: &DirectionStats) -> DirectionStats {
        DirectionStats {
            rtp_packets: self.rtp_packets.saturating_sub(earlier.rtp_packets),
            rtp_bytes: self.rtp_bytes.saturating_sub(earlier.rtp_bytes),
            rtcp_packets: self.rtcp_packets.saturating_sub(earlier.rtcp_packets),
            rtcp_bytes: self.rtcp_bytes.saturating_sub(earlier.rtcp_bytes),
            packets_lost: self
                .packets_lost
                .map(|now| now.saturating_sub(earlier.packets_lost.unwrap_or(0))),
            jitter_us: self.jitter_us,
        }
    }
}

/// One side of the call (customer or remote) as trunkd sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SideStats {
    /// Side -> trunkd (`cust2vc_*` / `rem2vc_*`).
    pub to_vc: DirectionStats,
    /// trunkd -> side (`vc2cust_*` / `vc2rem_*`).
    pub from_vc: DirectionStats,
    /// Round-trip time between trunkd and the side.
    pub rtt: Option<Duration>,
    /// MOS between trunkd and the side, 1.0–4.4.
    pub mos: Option<f64>,
}

/// MOS between trunkd and one side ([`mos()`]): `None` without `rtt`.
/// Takes the worse of the two directions: the larger known jitter (0 if
/// neither is known) and the larger loss percentage, where
///
/// - `to_vc` (trunkd receives) loses `lost / (received + lost)`;
/// - `from_vc` (trunkd sends) loses `lost / sent`, as the peer reported.
///
/// Pass cumulative stats for a MOS over the call so far, or
/// [`DirectionStats::since`] the previous line for the last interval.
pub fn side_mos(
    rtt: Option<Duration>,
    to_vc: &DirectionStats,
    from_vc: &DirectionStats,
) -> Option<f64> {
    let jitter_us = to_vc.jitter_us.max(from_vc.jitter_us).unwrap_or(0);
    let loss_in = to_vc.packets_lost.map_or(0.0, |lost| {
        loss_percent(lost, to_vc.rtp_packets.saturating_add(lost))
    });
    let loss_out = from_vc
        .packets_lost
        .map_or(0.0, |lost| loss_percent(lost, from_vc.rtp_packets));
    mos(rtt, jitter_us, loss_in.max(loss_out))
}

/// The call's identity fields of a line (SPEC §5.3), borrowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallIdentity<'a> {
    pub voice_connector_id: &'a str,
    /// The call's transaction id.
    pub call_id: &'a str,
    pub from_sip_user: &'a str,
    /// ISO 3166-1 alpha-2, `None` if unknown.
    pub from_country: Option<&'a str>,
    pub to_sip_user: &'a str,
    pub to_country: Option<&'a str>,
    /// Opaque id of the other endpoint.
    pub endpoint_id: &'a str,
    /// The configured region/site name.
    pub aws_region: &'a str,
}

/// One media metric line; serialise it with serde (e.g. `serde_json`) to
/// get the SPEC §5.3 JSON object, keys in this order.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MediaMetricLine<'a> {
    pub voice_connector_id: &'a str,
    /// Milliseconds since the Unix epoch (UTC).
    pub event_timestamp: u64,
    pub call_id: &'a str,
    pub from_sip_user: &'a str,
    pub from_country: Option<&'a str>,
    pub to_sip_user: &'a str,
    pub to_country: Option<&'a str>,
    pub endpoint_id: &'a str,
    pub aws_region: &'a str,
    pub cust2vc_rtp_packets: u64,
    pub cust2vc_rtp_bytes: u64,
    pub cust2vc_rtcp_packets: u64,
    pub cust2vc_rtcp_bytes: u64,
    pub cust2vc_packets_lost: Option<u64>,
    /// µs.
    pub cust2vc_jitter: Option<u64>,
    pub vc2cust_rtp_packets: u64,
    pub vc2cust_rtp_bytes: u64,
    pub vc2cust_rtcp_packets: u64,
    pub vc2cust_rtcp_bytes: u64,
    pub vc2cust_packets_lost: Option<u64>,
    /// µs.
    pub vc2cust_jitter: Option<u64>,
    /// µs.
    pub rtt_btwn_vc_and_cust: Option<u64>,
    pub mos_btwn_vc_and_cust: Option<f64>,
    pub rem2vc_rtp_packets: u64,
    pub rem2vc_rtp_bytes: u64,
    pub rem2vc_rtcp_packets: u64,
    pub rem2vc_rtcp_bytes: u64,
    pub rem2vc_packets_lost: Option<u64>,
    /// µs.
    pub rem2vc_jitter: Option<u64>,
    pub vc2rem_rtp_packets: u64,
    pub vc2rem_rtp_bytes: u64,
    pub vc2rem_rtcp_packets: u64,
    pub vc2rem_rtcp_bytes: u64,
    pub vc2rem_packets_lost: Option<u64>,
    /// µs.
    pub vc2rem_jitter: Option<u64>,
    /// µs.
    pub rtt_btwn_vc_and_rem: Option<u64>,
    pub mos_btwn_vc_and_rem: Option<f64>,
}

/// RTT as whole microseconds (truncated; saturating).
fn rtt_us(rtt: Option<Duration>) -> Option<u64> {
    rtt.map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// MOS rounded to two decimals; a non-finite value (never produced by
/// [`mos()`]) becomes `None`.
fn round_mos(m: Option<f64>) -> Option<f64> {
    m.filter(|m| m.is_finite())
        .map(|m| (m * 100.0).round() / 100.0)
}

impl<'a> MediaMetricLine<'a> {
    /// A line for `id` at `event_timestamp_ms` (ms since the Unix epoch)
    /// from the customer and remote sides.
    pub fn new(
        id: &CallIdentity<'a>,
        event_timestamp_ms: u64,
        customer: &SideStats,
        remote: &SideStats,
    ) -> Self {
        let (c_in, c_out, r_in, r_out) = (
            customer.to_vc,
            customer.from_vc,
            remote.to_vc,
            remote.from_vc,
        );
        MediaMetricLine {
            voice_connector_id: id.voice_connector_id,
            event_timestamp: event_timestamp_ms,
            call_id: id.call_id,
            from_sip_user: id.from_sip_user,
            from_country: id.from_country,
            to_sip_user: id.to_sip_user,
            to_country: id.to_country,
            endpoint_id: id.endpoint_id,
            aws_region: id.aws_region,
            cust2vc_rtp_packets: c_in.rtp_packets,
            cust2vc_rtp_bytes: c_in.rtp_bytes,
            cust2vc_rtcp_packets: c_in.rtcp_packets,
            cust2vc_rtcp_bytes: c_in.rtcp_bytes,
            cust2vc_packets_lost: c_in.packets_lost,
            cust2vc_jitter: c_in.jitter_us,
            vc2cust_rtp_packets: c_out.rtp_packets,
            vc2cust_rtp_bytes: c_out.rtp_bytes,
            vc2cust_rtcp_packets: c_out.rtcp_packets,
            vc2cust_rtcp_bytes: c_out.rtcp_bytes,
            vc2cust_packets_lost: c_out.packets_lost,
            vc2cust_jitter: c_out.jitter_us,
            rtt_btwn_vc_and_cust: rtt_us(customer.rtt),
            mos_btwn_vc_and_cust: round_mos(customer.mos),
            rem2vc_rtp_packets: r_in.rtp_packets,
            rem2vc_rtp_bytes: r_in.rtp_bytes,
            rem2vc_rtcp_packets: r_in.rtcp_packets,
            rem2vc_rtcp_bytes: r_in.rtcp_bytes,
            rem2vc_packets_lost: r_in.packets_lost,
            rem2vc_jitter: r_in.jitter_us,
            vc2rem_rtp_packets: r_out.rtp_packets,
            vc2rem_rtp_bytes: r_out.rtp_bytes,
            vc2rem_rtcp_packets: r_out.rtcp_packets,
            vc2rem_rtcp_bytes: r_out.rtcp_bytes,
            vc2rem_packets_lost: r_out.packets_lost,
            vc2rem_jitter: r_out.jitter_us,
            rtt_btwn_vc_and_rem: rtt_us(remote.rtt),
            mos_btwn_vc_and_rem: round_mos(remote.mos),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> CallIdentity<'static> {
        CallIdentity {
            voice_connector_id: "vc-abc",
            call_id: "1b4e28ba-2fa1-41d2-883f-0016d3cca427",
            from_sip_user: "+14155550100",
            from_country: Some("US"),
            to_sip_user: "+442079460000",
            to_country: Some("GB"),
            endpoint_id: "carrier-1",
            aws_region: "local",
        }
    }

    fn dir(base: u64, lost: Option<u64>, jitter_us: Option<u64>) -> DirectionStats {
        DirectionStats {
            rtp_packets: base,
            rtp_bytes: base * 172,
            rtcp_packets: base / 250,
            rtcp_bytes: base / 250 * 80,
            packets_lost: lost,
            jitter_us,
        }
    }

    #[test]
    fn full_line_exact_json() {
        let customer = SideStats {
            to_vc: dir(3000, Some(12), Some(1875)),
            from_vc: dir(2998, Some(3), Some(2500)),
            rtt: Some(Duration::from_micros(41_250)),
            mos: Some(4.331_580_889),
        };
        let remote = SideStats {
            to_vc: dir(2999, Some(0), Some(625)),
            from_vc: dir(3001, None, None),
            rtt: None,
            mos: None,
        };
        let line = MediaMetricLine::new(&identity(), 1_700_000_060_000, &customer, &remote);
        let json = serde_json::to_string(&line).unwrap();
        let want = concat!(
            r#"{"voice_connector_id":"vc-abc","event_timestamp":1700000060000,"#,
            r#""call_id":"1b4e28ba-2fa1-41d2-883f-0016d3cca427","from_sip_user":"+14155550100","#,
            r#""from_country":"US","to_sip_user":"+442079460000","to_country":"GB","#,
            r#""endpoint_id":"carrier-1","aws_region":"local","#,
            r#""cust2vc_rtp_packets":3000,"cust2vc_rtp_bytes":516000,"cust2vc_rtcp_packets":12,"#,
            r#""cust2vc_rtcp_bytes":960,"cust2vc_packets_lost":12,"cust2vc_jitter":1875,"#,
            r#""vc2cust_rtp_packets":2998,"vc2cust_rtp_bytes":515656,"vc2cust_rtcp_packets":11,"#,
            r#""vc2cust_rtcp_bytes":880,"vc2cust_packets_lost":3,"vc2cust_jitter":2500,"#,
            r#""rtt_btwn_vc_and_cust":41250,"mos_btwn_vc_and_cust":4.33,"#,
            r#""rem2vc_rtp_packets":2999,"rem2vc_rtp_bytes":515828,"rem2vc_rtcp_packets":11,"#,
            r#""rem2vc_rtcp_bytes":880,"rem2vc_packets_lost":0,"rem2vc_jitter":625,"#,
            r#""vc2rem_rtp_packets":3001,"vc2rem_rtp_bytes":516172,"vc2rem_rtcp_packets":12,"#,
            r#""vc2rem_rtcp_bytes":960,"vc2rem_packets_lost":null,"vc2rem_jitter":null,"#,
            r#""rtt_btwn_vc_and_rem":null,"mos_btwn_vc_and_rem":null}"#,
        );
        assert_eq!(json, want);
    }

    #[test]
    fn unknown_countries_are_null_and_schema_is_stable() {
        let mut id = identity();
        id.from_country = None;
        id.to_country = None;
        let line = MediaMetricLine::new(&id, 0, &SideStats::default(), &SideStats::default());
        let v = serde_json::to_value(&line).unwrap();
        let obj = v.as_object().unwrap();
        assert_eq!(obj.len(), 37);
        assert!(obj["from_country"].is_null() && obj["to_country"].is_null());
        assert_eq!(obj["cust2vc_rtp_packets"], 0);
        assert!(obj["cust2vc_jitter"].is_null());
        for prefix in ["cust2vc", "vc2cust", "rem2vc", "vc2rem"] {
            for field in [
                "rtp_packets",
                "rtp_bytes",
                "rtcp_packets",
                "rtcp_bytes",
                "packets_lost",
                "jitter",
            ] {
                assert!(
                    obj.contains_key(&format!("{prefix}_{field}")),
                    "{prefix}_{field}"
                );
            }
        }
    }

    #[test]
    fn mos_rounding_and_rtt_truncation() {
        assert_eq!(round_mos(Some(4.404_394)), Some(4.4));
        assert_eq!(round_mos(Some(2.536)), Some(2.54));
        assert_eq!(round_mos(Some(1.0)), Some(1.0));
        assert_eq!(round_mos(Some(f64::NAN)), None);
        assert_eq!(rtt_us(Some(Duration::from_nanos(1_999))), Some(1));
        assert_eq!(rtt_us(None), None);
    }

    #[test]
    fn side_mos_takes_the_worse_direction() {
        let rtt = Some(Duration::from_millis(40));
        // In: 1 lost of 100 expected = 1 %; out: 2 lost of 100 sent = 2 %.
        // Jitter: max(5000, 2000) = 5 ms. latency 40, R = 92.2 − 5 = 87.2.
        let to_vc = dir(99, Some(1), Some(5000));
        let from_vc = dir(100, Some(2), Some(2000));
        let got = side_mos(rtt, &to_vc, &from_vc).unwrap();
        assert!((got - mos(rtt, 5000, 2.0).unwrap()).abs() < 1e-12);
        // 1 + 0.035·87.2 + 7e-6·87.2·27.2·12.8 = 1 + 3.052 + 0.212516864
        assert!((got - 4.264_516_864).abs() < 1e-9, "{got}");
        // Unknown outbound loss/jitter are ignored.
        let got = side_mos(rtt, &to_vc, &dir(100, None, None)).unwrap();
        assert!((got - mos(rtt, 5000, 1.0).unwrap()).abs() < 1e-12);
        assert_eq!(side_mos(None, &to_vc, &from_vc), None);
        // Nothing known at all: only the RTT counts.
        assert_eq!(
            side_mos(rtt, &DirectionStats::default(), &DirectionStats::default()),
            mos(rtt, 0, 0.0)
        );
    }

    #[test]
    fn since_subtracts_counters_and_keeps_jitter() {
        let earlier = dir(1000, Some(10), Some(3000));
        let now = dir(4000, Some(25), Some(1200));
        let d = now.since(&earlier);
        assert_eq!(
            d,
            DirectionStats {
                rtp_packets: 3000,
                rtp_bytes: 3000 * 172,
                rtcp_packets: 12,
                rtcp_bytes: 960,
                packets_lost: Some(15),
                jitter_us: Some(1200),
            }
        );
        // Unknown before, known now: all of it is new.
        assert_eq!(
            dir(10, Some(4), None)
                .since(&dir(5, None, None))
                .packets_lost,
            Some(4)
        );
        assert_eq!(
            dir(10, None, None)
                .since(&dir(5, Some(4), None))
                .packets_lost,
            None
        );
    }
}
