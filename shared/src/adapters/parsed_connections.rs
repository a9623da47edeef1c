//! Connections already parsed, by id and version, so a warm token read does not parse the
//! connection's document again (it was most of a read's CPU after the event itself). The
//! store's version is the truth: an entry is used only when its version is the one just read,
//! so an update by any process is seen on the next read. Bounded (least recently used goes).

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use lru::LruCache;

use crate::domain::{Connection, ConnectionId};
use crate::ports::StoreError;

const CAPACITY: NonZeroUsize = NonZeroUsize::new(1_024).expect("non-zero");

pub struct ParsedConnections {
    entries: Mutex<LruCache<ConnectionId, Arc<Connection>>>,
}

impl Default for ParsedConnections {
    fn default() -> Self {
        Self {
            entries: Mutex::new(LruCache::new(CAPACITY)),
        }
    }
}

impl ParsedConnections {
    /// The connection `id` at `version`: the parsed copy if there is one, else `parse()`'s.
    pub fn get_or_parse(
        &self,
        id: &ConnectionId,
        version: u64,
        parse: impl FnOnce() -> Result<Connection, StoreError>,
    ) -> Result<Arc<Connection>, StoreError> {
        if let Some(known) = self.lock().get(id).filter(|c| c.version == version) {
            return Ok(known.clone());
        }
        let parsed = Arc::new(parse()?);
        if parsed.id == *id && parsed.version == version {
            self.lock().put(id.clone(), parsed.clone());
        }
        Ok(parsed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<ConnectionId, Arc<Connection>>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}
