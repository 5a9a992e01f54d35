//! A spawned binary that cannot outlive its test: [`ChildGuard`] kills and reaps the child
//! when dropped, which also happens while a failing test unwinds.

use std::process::{Child, Command};

/// Owns a child process; dropping it kills the process (SIGKILL) and waits for it, so no
/// test leaves a server running, whether it passes or panics.
#[derive(Debug)]
pub struct ChildGuard {
    child: Option<Child>,
}

impl ChildGuard {
    /// Spawns `cmd` under a guard.
    ///
    /// # Panics
    /// When the program cannot be started (a broken build or PATH).
    pub fn spawn(cmd: &mut Command) -> ChildGuard {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {:?}: {e}", cmd.get_program()));
        ChildGuard { child: Some(child) }
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The child, e.g. to take its stdout.
    pub fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("the child is owned until drop")
    }

    /// Whether the process has exited (reaping it if so).
    pub fn has_exited(&mut self) -> bool {
        matches!(self.child().try_wait(), Ok(Some(_)))
    }

    /// Waits for the process to exit by itself and returns its status; the guard then has
    /// nothing left to kill.
    pub fn wait(mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("owned until drop");
        child.wait().expect("wait for the child")
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alive(pid: u32) -> bool {
        // /proc/<pid> disappears once the process is reaped.
        std::path::Path::new(&format!("/proc/{pid}")).exists()
    }

    #[test]
    fn a_child_is_killed_and_reaped_when_the_test_panics_inside_the_guard() {
        let pid = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let seen = pid.clone();
        let result = std::panic::catch_unwind(move || {
            let guard = ChildGuard::spawn(Command::new("sleep").arg("300"));
            seen.store(guard.id(), std::sync::atomic::Ordering::SeqCst);
            assert!(alive(guard.id()));
            panic!("a test failing while its server runs");
        });
        assert!(result.is_err(), "the closure panicked");
        let pid = pid.load(std::sync::atomic::Ordering::SeqCst);
        assert_ne!(pid, 0);
        assert!(
            !alive(pid),
            "process {pid} was left running after the panic"
        );
    }

    #[test]
    fn waiting_for_a_child_that_exits_by_itself_returns_its_status() {
        let guard = ChildGuard::spawn(Command::new("sh").args(["-c", "exit 3"]));
        assert_eq!(guard.wait().code(), Some(3));
    }
}
