//! The reader pool: a fixed set of read-only connections used on blocking threads, so queries
//! never stall the async runtime and never wait for the writer (WAL readers see the last commit).

use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use rusqlite::Connection;
use tokio::sync::Semaphore;

use super::StoreError;
use super::system::open_connection;

/// A connection lent to one read.
pub type ReadConn = Connection;

pub struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Semaphore,
    count: usize,
}

impl Readers {
    pub fn open(path: &Path, count: usize) -> Result<Readers, StoreError> {
        let mut idle = Vec::with_capacity(count);
        for _ in 0..count {
            idle.push(open_connection(path, true)?);
        }
        Ok(Readers {
            path: path.to_path_buf(),
            idle: Mutex::new(idle),
            permits: Semaphore::new(count),
            count,
        })
    }

    /// Waits until no read is running, closes every connection and keeps new reads waiting
    /// until the returned guard is dropped (they then open fresh connections): how the
    /// database file is swapped under the pool.
    pub async fn drain(&self) -> Result<tokio::sync::SemaphorePermit<'_>, StoreError> {
        let all = self
            .permits
            .acquire_many(self.count as u32)
            .await
            .map_err(|_| StoreError::Closed)?;
        self.idle.lock().clear();
        Ok(all)
    }

    pub async fn run<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| StoreError::Closed)?;
        let conn = match self.idle.lock().pop() {
            Some(c) => c,
            None => open_connection(&self.path, true)?,
        };
        let joined = tokio::task::spawn_blocking(move || {
            let result = f(&conn);
            (conn, result)
        })
        .await;
        match joined {
            Ok((conn, result)) => {
                self.idle.lock().push(conn);
                result
            }
            // The closure panicked and took its connection with it; the next read opens a new one.
            Err(e) => Err(StoreError::Internal(format!("read task failed: {e}"))),
        }
    }
}
