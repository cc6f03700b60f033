//! Single node → cluster, on the SQLite side: whether a node holds state no log has seen, and
//! the genesis state that makes it the cluster's first snapshot.
//!
//! A node that never folded anything (applied sequence 0) but holds records or collections
//! of its own (a former single node, an imported PocketBase) is the cluster's *genesis*
//! candidate. [`prepare`] turns its database into canonical state at stream position 1 (the
//! genesis marker the node then claims in the stream): the applied sequence 1, the `users`
//! seed marked as folded (this node's `users` collection, token secret included, is the
//! cluster's), its plugin versions as the cluster's registry (`_sync_plugins`) and its binding
//! table as the folded one (`_sync_bindings`). Rows themselves stay as they are: a record
//! without a `_sync_versions` row is one no event wrote yet, on every node that installs the
//! snapshot alike. `genesis_pending` (node-local, never in a snapshot) says the marker is not
//! claimed yet; [`undo`] puts everything back when the claim is lost.

use rusqlite::{Connection, params};

use super::super::{StoreError, system};

/// A plugin version of the node's own registry, as `_sync_plugins` stores it.
#[derive(Debug, Clone)]
pub struct OwnPlugin {
    pub name: String,
    pub version: u32,
    pub sha256: String,
    /// The `PluginVersion` as JSON.
    pub meta: String,
}

/// Whether this node holds state that never went through a log: records no event wrote, or
/// collections beyond the ones every node creates at bootstrap, while it has folded nothing.
pub fn holds_own_state(conn: &Connection, schema: &system::Schema) -> Result<bool, StoreError> {
    if super::applied_seq(conn)? != 0 {
        return Ok(false);
    }
    let custom = schema
        .all()
        .iter()
        .any(|c| !c.system && c.id != system::BOOTSTRAP_USERS_ID);
    Ok(custom || super::super::snapshot::holds_unlogged_data(conn, schema)?)
}

/// Whether this node prepared its genesis state and has not claimed the marker yet.
pub fn pending(conn: &Connection) -> Result<bool, StoreError> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM _sync_state WHERE key = 'genesis_pending')",
        [],
        |r| r.get(0),
    )?)
}

/// Makes the live database the genesis state at position 1 (see the module docs). Runs in a
/// writer job; only on a node with applied sequence 0.
pub fn prepare(conn: &Connection, plugins: &[OwnPlugin], bindings: &str) -> Result<(), StoreError> {
    if super::applied_seq(conn)? != 0 {
        return Err(StoreError::Internal(
            "a genesis needs a node that has folded nothing".into(),
        ));
    }
    conn.execute_batch(
        "INSERT OR REPLACE INTO _sync_state (key, value) VALUES ('applied_seq', 1);
         INSERT OR REPLACE INTO _sync_state (key, value) VALUES ('users_seeded', 1);
         INSERT OR REPLACE INTO _sync_state (key, value) VALUES ('genesis_pending', 1);
         DELETE FROM _sync_plugins;",
    )?;
    for p in plugins {
        conn.execute(
            "INSERT INTO _sync_plugins (name, version, sha256, meta) VALUES (?1, ?2, ?3, ?4)",
            params![p.name, p.version, p.sha256, p.meta],
        )?;
    }
    conn.execute(
        "INSERT INTO _sync_bindings (id, data) VALUES (1, ?1)
         ON CONFLICT(id) DO UPDATE SET data = excluded.data",
        [bindings],
    )?;
    Ok(())
}

/// The marker is claimed: the genesis state is the cluster's.
pub fn finish(conn: &Connection) -> Result<(), StoreError> {
    conn.execute("DELETE FROM _sync_state WHERE key = 'genesis_pending'", [])?;
    Ok(())
}

/// The claim was lost (the stream holds another history): back to a node that folded nothing.
/// Records and collections were never touched.
pub fn undo(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "DELETE FROM _sync_state WHERE key IN ('applied_seq', 'users_seeded', 'genesis_pending');
         DELETE FROM _sync_plugins;
         DELETE FROM _sync_bindings;",
    )?;
    Ok(())
}
