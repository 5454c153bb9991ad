//! A value the server derives from the store and shares among tasks (every
//! agent's Sync stream), reloaded on first use after a change. Loading is
//! single-flight: when every stream wakes on the same change, one reads
//! the store and the others wait for its result.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The current version of a derived value, and whether it is stale.
#[derive(Debug)]
pub struct GenerationCache<T> {
    /// Bumped by every change of what the value is derived from.
    generation: AtomicU64,
    /// The last version loaded, and the generation it was loaded at.
    current: tokio::sync::Mutex<Option<(u64, Arc<T>)>>,
}

impl<T> Default for GenerationCache<T> {
    fn default() -> Self {
        GenerationCache {
            generation: AtomicU64::new(0),
            current: tokio::sync::Mutex::new(None),
        }
    }
}

impl<T> GenerationCache<T> {
    /// What the value derives from changed: the next reader reloads it.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// The value as of the last change, made by `load` if it is stale.
    pub async fn get<E, F>(&self, load: impl FnOnce() -> F) -> Result<Arc<T>, E>
    where
        F: Future<Output = Result<T, E>>,
    {
        let mut current = self.current.lock().await;
        // Read before loading: a change during the load leaves the result
        // marked stale, so the next reader loads again.
        let generation = self.generation.load(Ordering::SeqCst);
        if let Some((loaded_at, value)) = current.as_ref() {
            if *loaded_at == generation {
                return Ok(value.clone());
            }
        }
        // The old version goes first, so two are never alive here at once
        // (readers may still hold it until they are done with it).
        *current = None;
        let value = Arc::new(load().await?);
        *current = Some((generation, value.clone()));
        Ok(value)
    }
}
