//! The rows the auth flows keep for auth records in the system collections `_otps`, `_mfas`
//! and `_externalAuths`: removed with their record, and expired OTPs and MFA sessions removed
//! by the periodic cleanup. Deletions are ordinary record deletes (captured, so they replicate).

use rusqlite::params;

use super::records::delete_inner;
use super::system::{MFAS, OTPS};
use super::{StoreError, WriteCtx};

/// Deletes the rows of system collection `sys` (`_externalAuths`, `_otps`, `_mfas`) that belong
/// to auth record `rid` of collection `cid`; returns how many.
pub fn delete_for(
    ctx: &mut WriteCtx,
    sys: &str,
    cid: &str,
    rid: &str,
) -> Result<usize, StoreError> {
    let Some(sc) = ctx.schema.get(sys).cloned() else {
        return Ok(0);
    };
    let ids: Vec<String> = {
        let mut stmt = ctx.conn.prepare_cached(&format!(
            "SELECT `id` FROM {} WHERE `collectionRef` = ?1 AND `recordRef` = ?2",
            sc.table()
        ))?;
        let rows = stmt.query_map([cid, rid], |r| r.get::<_, String>(0))?;
        rows.collect::<Result<_, _>>()?
    };
    for row in &ids {
        delete_inner(ctx, &sc, row, 1)?;
    }
    Ok(ids.len())
}

/// Deletes the OTPs and MFA sessions older than their auth collection's lifetime for them
/// (`otp.duration`, `mfa.duration`) at `now`; returns how many went.
pub fn delete_expired(
    ctx: &mut WriteCtx,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<usize, StoreError> {
    let mut deleted = 0;
    let auth: Vec<_> = ctx
        .schema
        .all()
        .into_iter()
        .filter(|c| c.is_auth())
        .collect();
    for c in auth {
        let opts = c.auth.clone().unwrap_or_default();
        for (sys, secs) in [(OTPS, opts.otp.duration), (MFAS, opts.mfa.duration)] {
            let Some(sc) = ctx.schema.get(sys).cloned() else {
                continue;
            };
            let cutoff = crate::records::validate::format_date(
                &(now - chrono::Duration::seconds(secs.max(0))),
            );
            let ids: Vec<String> = {
                let mut stmt = ctx.conn.prepare_cached(&format!(
                    "SELECT `id` FROM {} WHERE `collectionRef` = ?1 AND `created` < ?2",
                    sc.table()
                ))?;
                let rows = stmt.query_map(params![c.id, cutoff], |r| r.get::<_, String>(0))?;
                rows.collect::<Result<_, _>>()?
            };
            for id in &ids {
                delete_inner(ctx, &sc, id, 1)?;
            }
            deleted += ids.len();
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::store::{Store, StoreOptions, records};

    fn otp(id: &str, created: &str) -> records::Record {
        json!({"id": id, "collectionRef": "_pb_users_auth_", "recordRef": "u1",
               "password": "x", "sentTo": "", "created": created, "updated": created})
        .as_object()
        .cloned()
        .unwrap_or_default()
    }

    #[tokio::test]
    async fn expired_otps_go_and_live_ones_stay() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), &StoreOptions::default()).expect("open");
        let now = chrono::Utc::now();
        let old = crate::records::validate::format_date(&(now - chrono::Duration::seconds(600)));
        let fresh = crate::records::validate::format_date(&now);
        let (o, f) = (old.clone(), fresh.clone());
        store
            .write(move |ctx| {
                records::put_raw(ctx, OTPS, &otp("oldoldoldoldold", &o))?;
                records::put_raw(ctx, OTPS, &otp("freshfreshfresh", &f))
            })
            .await
            .expect("seed");
        // users' OTPs live 180 s by default.
        let gone = store
            .write(move |ctx| delete_expired(ctx, now))
            .await
            .expect("cleanup");
        assert_eq!(gone, 1);
        let left = store
            .read(|conn, schema| {
                let c = schema.get(OTPS).cloned().ok_or(StoreError::NotFound)?;
                Ok((
                    records::get(conn, &c, "oldoldoldoldold")?.is_some(),
                    records::get(conn, &c, "freshfreshfresh")?.is_some(),
                ))
            })
            .await
            .expect("read");
        assert_eq!(left, (false, true));
    }
}
