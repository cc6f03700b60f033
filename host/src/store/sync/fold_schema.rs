//! The fold's schema events: collections created, updated, deleted or imported from the log,
//! and the plugin binding table stored with them (a part of `Fold`, see `fold.rs`).

use std::sync::Arc;

use serde_json::Value;

use super::super::super::collections::{check_views_after_delete, install, refresh_views};
use super::super::super::schema::Collection;
use super::super::super::{StoreError, ddl, system, views};
use super::{Fold, SEED_MARK};
use crate::replication::{Event, EventKind};

impl Fold<'_, '_> {
    pub(super) fn apply_schema(&mut self, event: &Event) -> Result<(), StoreError> {
        let data = Value::Object(event.data.clone().unwrap_or_default());
        let parse = |v: &Value| -> Result<Collection, StoreError> {
            serde_json::from_value(v.clone()).map_err(|e| {
                StoreError::BadRequest(format!(
                    "invalid collection in event: {}",
                    crate::replication::event::json_error_without_values(&e)
                ))
            })
        };
        match event.kind {
            EventKind::CollectionCreate => {
                let c = parse(&data)?;
                self.create_collection(c)
            }
            EventKind::CollectionUpdate => {
                if data.get(SEED_MARK) == Some(&Value::Bool(true)) {
                    // Every node seeds its own `users` collection (its token secret among
                    // it) once, as its first event: the first seed in the log wins
                    // everywhere, and later ones change nothing, so a token issued after the
                    // first seed folded stays valid on every node.
                    let seeded = self
                        .conn()
                        .prepare_cached(
                            "SELECT EXISTS (SELECT 1 FROM _sync_state WHERE key = 'users_seeded')",
                        )?
                        .query_row([], |r| r.get::<_, bool>(0))?;
                    if seeded {
                        return Ok(());
                    }
                    self.conn()
                        .prepare_cached(
                            "INSERT INTO _sync_state (key, value) VALUES ('users_seeded', 1)",
                        )?
                        .execute([])?;
                }
                let c = parse(&data)?;
                self.update_collection(c)
            }
            EventKind::CollectionDelete => self.delete_collection(&event.collection.id),
            EventKind::CollectionImport => {
                let list = data
                    .get("collections")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let delete_missing = data
                    .get("deleteMissing")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                let mut keep = std::collections::HashSet::new();
                // Views read the tables: they are made after every other collection.
                let mut list = list.iter().map(parse).collect::<Result<Vec<_>, _>>()?;
                list.sort_by_key(|c| c.is_view());
                for c in list {
                    keep.insert(c.id.clone());
                    if self.ctx.schema.get(&c.id).is_some() {
                        self.update_collection(c)?;
                    } else {
                        self.create_collection(c)?;
                    }
                }
                if delete_missing {
                    let gone: Vec<String> = self
                        .ctx
                        .schema
                        .all()
                        .iter()
                        .filter(|c| !c.system && !keep.contains(&c.id))
                        .map(|c| c.id.clone())
                        .collect();
                    for id in gone {
                        self.delete_collection(&id)?;
                    }
                }
                Ok(())
            }
            _ => Err(StoreError::Internal("not a schema event".into())),
        }
    }

    pub(super) fn create_collection(&mut self, c: Collection) -> Result<(), StoreError> {
        if self.ctx.schema.get(&c.id).is_some() || self.ctx.schema.get(&c.name).is_some() {
            return Err(StoreError::BadRequest(format!(
                "collection {:?} ({}) already exists",
                c.name, c.id
            )));
        }
        ddl::create_table(self.conn(), &c)?;
        if c.is_view() {
            // The view's tables may be gone at this position of the log (deleted by an event
            // that came first): refused here, the same on every node.
            views::check(self.conn(), &c).map_err(StoreError::BadRequest)?;
        }
        system::save_collection(self.conn(), &c)?;
        install(self.ctx, c);
        Ok(())
    }

    pub(super) fn update_collection(&mut self, c: Collection) -> Result<(), StoreError> {
        let old = self
            .ctx
            .schema
            .get(&c.id)
            .cloned()
            .ok_or_else(|| StoreError::BadRequest(format!("unknown collection {}", c.id)))?;
        // Overlays were written for the old table shape; fold them back first.
        self.revert_collection(&old)?;
        ddl::alter_table(self.conn(), &old, &c)?;
        system::save_collection(self.conn(), &c)?;
        if c.is_view() {
            views::check(self.conn(), &c).map_err(StoreError::BadRequest)?;
        }
        let new = install(self.ctx, c);
        crate::store::files::sweep_collection(self.conn(), &new, Some(self.last_seq))?;
        refresh_views(self.ctx, &new)?;
        // Rows remembered for the change feed now belong to the new shape.
        for (coll, _) in self.shown.values_mut() {
            if coll.id == new.id {
                *coll = new.clone();
            }
        }
        Ok(())
    }

    pub(super) fn delete_collection(&mut self, id: &str) -> Result<(), StoreError> {
        let c = self
            .ctx
            .schema
            .get(id)
            .cloned()
            .ok_or_else(|| StoreError::BadRequest(format!("unknown collection {id}")))?;
        ddl::drop_table(self.conn(), &c)?;
        system::delete_collection_row(self.conn(), &c.id)?;
        crate::store::files::drop_collection(self.conn(), &c.id, Some(self.last_seq))?;
        self.file_keys.retain(|(fc, _)| fc.id != c.id);
        let gone: i64 = self
            .conn()
            .prepare_cached("SELECT coalesce(sum(bytes), 0) FROM _sync_versions WHERE coll = ?1")?
            .query_row([&c.id], |r| r.get(0))?;
        self.tracker.content_bytes -= gone;
        for table in ["_sync_shadow", "_sync_versions", "_sync_pending"] {
            self.conn()
                .execute(&format!("DELETE FROM {table} WHERE coll = ?1"), [&c.id])?;
        }
        self.reverted.retain(|k, _| k.0 != c.id);
        self.shown.retain(|k, _| k.0 != c.id);
        let mut s = (*self.ctx.schema).clone();
        s.remove(&c.id);
        self.ctx.schema = Arc::new(s);
        // A delete that would break a view is refused before anything outside the
        // transaction changes.
        check_views_after_delete(self.conn(), &self.ctx.schema, &c)?;
        // Its plugin bindings go with it (bindings are keyed by collection id): a collection
        // created later under the same name starts with none.
        if self.hooks.policy.drop_collection(&c.id)? {
            self.store_bindings()?;
        }
        Ok(())
    }

    /// Stores the runtime's binding table with the fold's transaction.
    pub(super) fn store_bindings(&self) -> Result<(), StoreError> {
        self.conn()
            .prepare_cached(
                "INSERT INTO _sync_bindings (id, data) VALUES (1, ?1)
                 ON CONFLICT(id) DO UPDATE SET data = excluded.data",
            )?
            .execute([self.hooks.policy.bindings()])?;
        Ok(())
    }
}
