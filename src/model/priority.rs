//! CPU priority for the threads that run the encoder. On a CPU the encoder of the next frame
//! and the decoder of a prompt update run at the same time; at equal priority they split the
//! cores, so a click's decoder-only re-decode takes about twice as long as it does alone. With
//! the encoder's threads at a higher nice value the kernel gives the decoder the cores while
//! it runs, and the encoder the rest of the time; the total work per frame stays the same.

use std::io;

/// Raises the calling thread's nice value by `by` (up to 19); 0 leaves it as it is. Threads
/// it spawns afterwards start from the new value, and an unprivileged process cannot lower it
/// again, so callers do this on threads that only run the encoder.
pub fn lower_this_thread(by: u8) -> io::Result<()> {
    if by == 0 {
        return Ok(());
    }
    let current = nice_of_this_thread()?;
    let lowered = (current + i32::from(by)).min(19);
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, this_thread(), lowered) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The calling thread's nice value.
pub fn nice_of_this_thread() -> io::Result<i32> {
    // getpriority returns -1 both as a value and as an error; errno tells them apart.
    unsafe { *libc::__errno_location() = 0 };
    let current = unsafe { libc::getpriority(libc::PRIO_PROCESS, this_thread()) };
    let error = io::Error::last_os_error();
    if current == -1 && error.raw_os_error().is_some_and(|code| code != 0) {
        return Err(error);
    }
    Ok(current)
}

/// On Linux, nice values are per thread: PRIO_PROCESS with a thread id names one thread.
fn this_thread() -> libc::id_t {
    unsafe { libc::gettid() as libc::id_t }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowering_a_thread_leaves_the_others_alone() {
        let before = nice_of_this_thread().unwrap();
        let lowered = std::thread::spawn(move || {
            lower_this_thread(5).unwrap();
            let own = nice_of_this_thread().unwrap();
            // A thread spawned afterwards inherits the lowered priority.
            let child = std::thread::spawn(|| nice_of_this_thread().unwrap()).join().unwrap();
            (own, child)
        })
        .join()
        .unwrap();
        assert_eq!(lowered, ((before + 5).min(19), (before + 5).min(19)));
        assert_eq!(nice_of_this_thread().unwrap(), before, "the spawning thread keeps its priority");
        lower_this_thread(0).unwrap();
        assert_eq!(nice_of_this_thread().unwrap(), before, "0 changes nothing");
    }
}
