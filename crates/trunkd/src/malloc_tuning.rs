//! glibc malloc settings for a daemon whose heap churns at a steady level.
//!
//! glibc's defaults suit a program whose heap grows and shrinks: when the
//! free space at the top of a heap passes `M_TRIM_THRESHOLD` (128 KiB, and
//! adjusted upwards as large blocks are freed) it hands the pages back to
//! the kernel, and the next allocation faults them in again. trunkd's heap
//! churns at a level that the call rate sets (every SIP message, every call
//! task, every record), so under load it kept returning and re-faulting the
//! same pages: `sysmalloc`, page faults and zeroing were about 5 % of a
//! call's CPU at 1000 calls/s in a profile (docs/performance.md, "Issue 15:
//! the relay thread's batch and the allocator").
//!
//! So the daemon keeps freed heap up to [`TRIM_THRESHOLD`] before giving it
//! back, grows a heap [`TOP_PAD`] at a time, and fixes the mmap threshold
//! (setting any of these turns off glibc's dynamic adjustment of the
//! others). The cost is RSS that stays at its peak after a burst of calls,
//! which is what trunkd's RSS already did (docs/performance.md, the soak).
//!
//! An operator who sets any `MALLOC_*_` variable of glibc's own (see
//! mallopt(3)) keeps full control: nothing is changed then.

/// Free space kept at the top of a heap before it is returned.
pub const TRIM_THRESHOLD: usize = 64 << 20;
/// Extra space asked of the kernel each time a heap grows.
pub const TOP_PAD: usize = 4 << 20;
/// Blocks from this size up get their own mapping. glibc starts at
/// 128 KiB and raises it (up to 32 MiB) as such blocks are freed; fixed
/// here, high enough that no per-call buffer is mapped and unmapped.
pub const MMAP_THRESHOLD: usize = 4 << 20;

/// The glibc variables that make [`apply`] leave the allocator alone.
const OPERATOR_VARS: [&str; 4] = [
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_TOP_PAD_",
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_ARENA_MAX",
];

/// Whether the environment leaves the tuning to trunkd.
fn left_to_trunkd(var: impl Fn(&str) -> bool) -> bool {
    !OPERATOR_VARS.iter().any(|v| var(v))
}

/// Applies the settings (see the module docs). Call first thing in the
/// daemon, before its threads start. Returns whether they were applied.
pub fn apply() -> bool {
    if !left_to_trunkd(|v| std::env::var_os(v).is_some()) {
        return false;
    }
    set()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set() -> bool {
    let params = [
        (libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD),
        (libc::M_TOP_PAD, TOP_PAD),
        (libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD),
    ];
    params.iter().all(|&(param, value)| {
        let value = libc::c_int::try_from(value).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt only reads its two integer arguments; it returns
        // 0 when it refuses a value.
        unsafe { libc::mallopt(param, value) == 1 }
    })
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_glibc_variable_of_the_operator_wins() {
        assert!(left_to_trunkd(|_| false));
        for var in OPERATOR_VARS {
            assert!(!left_to_trunkd(|v| v == var), "{var}");
        }
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn glibc_accepts_the_settings() {
        assert!(set());
    }
}
