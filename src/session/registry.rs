//! Running sessions by id, so that a call other than the session's own stream can steer it: a
//! browser whose gRPC-Web cannot send on a stream, a robot's planner that is not the process
//! reading the masks. Ids are 128 random bits; an entry lives exactly as long as its session.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::io::SessionInput;

#[derive(Default)]
pub struct SessionRegistry {
    sessions: Mutex<HashMap<String, Entry>>,
}

struct Entry {
    /// Weak: the session's inputs close when its own stream half-closes (client frames finish
    /// what was sent), whoever else knows the id.
    inputs: mpsc::WeakSender<SessionInput>,
    /// The session's source key (as the affinity header names it); None for client frames.
    source_key: Option<String>,
}

/// A running session's way in, as `SessionRegistry::find` returns it.
pub struct Steering {
    pub inputs: mpsc::Sender<SessionInput>,
    pub source_key: Option<String>,
}

/// A session's entry; dropped when the session ends, it removes the entry.
pub struct Registration {
    pub id: String,
    registry: Arc<SessionRegistry>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.sessions.lock().expect("session registry lock poisoned").remove(&self.id);
    }
}

impl SessionRegistry {
    pub fn register(self: &Arc<Self>, inputs: &mpsc::Sender<SessionInput>, source_key: Option<String>) -> Registration {
        let id = new_id();
        let entry = Entry { inputs: inputs.downgrade(), source_key };
        self.sessions.lock().expect("session registry lock poisoned").insert(id.clone(), entry);
        Registration { id, registry: self.clone() }
    }

    /// The session with this id, while it runs and takes inputs.
    pub fn find(&self, id: &str) -> Option<Steering> {
        let sessions = self.sessions.lock().expect("session registry lock poisoned");
        let entry = sessions.get(id)?;
        Some(Steering { inputs: entry.inputs.upgrade()?, source_key: entry.source_key.clone() })
    }

    pub fn len(&self) -> usize {
        self.sessions.lock().expect("session registry lock poisoned").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// 128 bits from the operating system's random source, as 32 hex digits.
fn new_id() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_lives_as_long_as_its_registration_and_its_inputs() {
        let registry = Arc::new(SessionRegistry::default());
        let (tx, _rx) = mpsc::channel(1);
        let first = registry.register(&tx, Some("cam".into()));
        let second = registry.register(&tx, None);
        assert_ne!(first.id, second.id);
        assert_eq!(first.id.len(), 32);
        assert_eq!(registry.find(&first.id).and_then(|s| s.source_key).as_deref(), Some("cam"));
        assert!(registry.find("0123").is_none());
        drop(first);
        assert_eq!(registry.len(), 1);
        drop(tx);
        assert!(registry.find(&second.id).is_none(), "a session whose inputs closed is still steerable");
    }
}
