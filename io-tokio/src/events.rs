//! The agent's user-event ring (see `tribune_core::event`) plus a version
//! counter that wakes blocking `/v1/event/list` readers.

use std::sync::Mutex;
use tokio::sync::watch;
use tribune_core::event::{EventBuffer, EventError, Fire};
use tribune_core::ids::Uuid;

pub struct Events {
    buffer: Mutex<EventBuffer>,
    version: watch::Sender<u64>,
}

impl Default for Events {
    fn default() -> Events {
        Events {
            buffer: Mutex::new(EventBuffer::default()),
            version: watch::Sender::new(0),
        }
    }
}

impl Events {
    fn buffer(&self) -> std::sync::MutexGuard<'_, EventBuffer> {
        self.buffer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records an event; returns its JSON.
    pub fn fire(&self, id: Uuid, fire: Fire) -> Result<Vec<u8>, EventError> {
        let json = {
            let mut buffer = self.buffer();
            let event = buffer.fire(id, fire)?;
            serde_json::to_vec(&event.json()).unwrap_or_default()
        };
        self.version.send_modify(|v| *v += 1);
        Ok(json)
    }

    /// The matching events as a JSON array, and the listing's index.
    pub fn list(&self, name: Option<&str>) -> (Vec<u8>, u64) {
        let buffer = self.buffer();
        let (events, index) = buffer.list(name);
        let rendered: Vec<_> = events.iter().map(|e| e.json()).collect();
        (serde_json::to_vec(&rendered).unwrap_or_default(), index)
    }

    /// A receiver that sees every later fire.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }
}
