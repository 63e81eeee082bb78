//! Record object keys (SPEC §5.1, §5.2):
//! `<prefix>/<folder>/json/<vcId>/<yyyy>/<mm>/<dd>/<HH.MM.SS.mmm>_<transactionId>`,
//! the time being the call's start in UTC. The folder names keep the
//! managed service's layout so tools written for it find the records.

use std::time::SystemTime;

use crate::civil::UtcDateTime;
use crate::transaction_id::TransactionId;
use crate::VcId;

/// The CDR folder of the managed service's bucket layout.
pub const CDR_FOLDER: &str = "Amazon-Chime-Voice-Connector-CDRs";
/// The SDR folder (SPEC §5.2: "as the CDR but `...-SDRs/...`").
pub const SDR_FOLDER: &str = "Amazon-Chime-Voice-Connector-SDRs";

/// A record's key under `folder`. An empty `prefix` gives a key without a
/// leading `/`; slashes at the end of `prefix` are not doubled.
pub fn record_key(
    prefix: &str,
    folder: &str,
    vc_id: &VcId,
    start: SystemTime,
    transaction_id: TransactionId,
) -> String {
    let t = UtcDateTime::from_system_time(start);
    let prefix = prefix.trim_end_matches('/');
    let lead = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    format!(
        "{lead}{folder}/json/{vc_id}/{:04}/{:02}/{:02}/{:02}.{:02}.{:02}.{:03}_{transaction_id}",
        t.year, t.month, t.day, t.hour, t.minute, t.second, t.millisecond
    )
}

/// The folder of WAV files put in the record store
/// (`[voice_connectors.streaming] record_store`); trunkd's own, beside the
/// managed service's record folders.
pub const AUDIO_FOLDER: &str = "Amazon-Chime-Voice-Connector-Audio";

/// The key of a call's audio file `file_name` (`<txn>-caller.wav`):
/// `<prefix>/<AUDIO_FOLDER>/wav/<vcId>/<yyyy>/<mm>/<dd>/<HH.MM.SS.mmm>_<file_name>`.
pub fn audio_key(prefix: &str, vc_id: &VcId, start: SystemTime, file_name: &str) -> String {
    let t = UtcDateTime::from_system_time(start);
    let prefix = prefix.trim_end_matches('/');
    let lead = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    format!(
        "{lead}{AUDIO_FOLDER}/wav/{vc_id}/{:04}/{:02}/{:02}/{:02}.{:02}.{:02}.{:03}_{file_name}",
        t.year, t.month, t.day, t.hour, t.minute, t.second, t.millisecond
    )
}

/// A CDR's key (SPEC §5.1).
pub fn cdr_key(
    prefix: &str,
    vc_id: &VcId,
    start: SystemTime,
    transaction_id: TransactionId,
) -> String {
    record_key(prefix, CDR_FOLDER, vc_id, start, transaction_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn keys() {
        let vc = VcId::new("vc-east").unwrap();
        let tx = TransactionId::from_random_bytes([0xab; 16]);
        let start = UNIX_EPOCH + Duration::from_millis(1_565_399_625_042);
        let tail = "Amazon-Chime-Voice-Connector-CDRs/json/vc-east/2019/08/10/01.13.45.042_abababab-abab-4bab-abab-abababababab";
        assert_eq!(cdr_key("", &vc, start, tx), tail);
        assert_eq!(
            cdr_key("records", &vc, start, tx),
            format!("records/{tail}")
        );
        assert_eq!(cdr_key("a/b/", &vc, start, tx), format!("a/b/{tail}"));
        assert!(record_key("", SDR_FOLDER, &vc, UNIX_EPOCH, tx).starts_with(
            "Amazon-Chime-Voice-Connector-SDRs/json/vc-east/1970/01/01/00.00.00.000_"
        ));
    }
}
