//! Who holds a lane or the consumer role, and whether they still live.
//!
//! An owner word packs the owning process's pid (22 bits, the kernel's
//! `PID_MAX_LIMIT`) with the low 42 bits of its start time in clock ticks
//! since boot (`/proc/<pid>/stat`, field 22), so a recycled pid does not pass
//! for the dead process. 0 means nobody. One word, so a claim is one CAS.

const PID_BITS: u32 = 22;
const PID_MASK: u64 = (1 << PID_BITS) - 1;
const START_MASK: u64 = (1 << (64 - PID_BITS)) - 1;

/// This process's owner word.
pub(crate) fn current() -> u64 {
    #[cfg(any(miri, loom))]
    {
        // No /proc under miri or loom: one fixed identity, always alive.
        1
    }
    #[cfg(not(any(miri, loom)))]
    {
        use std::sync::OnceLock;
        static WORD: OnceLock<u64> = OnceLock::new();
        *WORD.get_or_init(|| {
            let pid = std::process::id();
            encode(pid, start_ticks(pid).unwrap_or(0))
        })
    }
}

pub(crate) fn encode(pid: u32, start_ticks: u64) -> u64 {
    (u64::from(pid) & PID_MASK) | ((start_ticks & START_MASK) << PID_BITS)
}

/// The pid in an owner word.
pub(crate) fn pid(word: u64) -> u32 {
    (word & PID_MASK) as u32
}

/// Whether the process named by `word` still runs. This process always does.
pub(crate) fn alive(word: u64) -> bool {
    if word == 0 {
        return false;
    }
    if word == current() {
        return true;
    }
    #[cfg(any(miri, loom))]
    {
        false
    }
    #[cfg(not(any(miri, loom)))]
    {
        let pid = pid(word);
        match start_ticks(pid) {
            Some(ticks) => encode(pid, ticks) == word,
            // No /proc entry: gone, unless /proc is not mounted at all; then
            // ask the kernel whether the pid exists.
            None => !std::path::Path::new("/proc/self/stat").exists() && kill_finds(pid),
        }
    }
}

#[cfg(not(any(miri, loom)))]
fn kill_finds(pid: u32) -> bool {
    use rustix::process::{Pid, test_kill_process};
    Pid::from_raw(pid as i32)
        .is_some_and(|p| !matches!(test_kill_process(p), Err(rustix::io::Errno::SRCH)))
}

/// Field 22 of `/proc/<pid>/stat`: the start time in ticks since boot.
#[cfg(not(any(miri, loom)))]
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold anything,
    // spaces and parentheses included: fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    // `rest` starts with field 3 (state); field 22 is the 20th after it.
    let ticks = rest.split_ascii_whitespace().nth(19)?.parse().ok()?;
    // A zombie keeps its /proc entry until reaped; it holds nothing any more.
    (rest.split_ascii_whitespace().next()? != "Z").then_some(ticks)
}

#[cfg(all(test, not(any(miri, loom))))]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_stranger_word_is_not() {
        let me = current();
        assert_eq!(pid(me), std::process::id());
        assert!(alive(me));
        // Same pid, another start time: a recycled pid.
        let recycled = encode(
            std::process::id(),
            start_ticks(std::process::id()).unwrap() + 1,
        );
        assert!(!alive(recycled));
        assert!(!alive(0));
    }

    #[test]
    fn a_reaped_child_is_dead() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let word = encode(pid, start_ticks(pid).unwrap_or(0));
        child.wait().unwrap();
        assert!(!alive(word));
    }
}
