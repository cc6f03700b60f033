//! Content hashes of the replicated tables: what `/api/sync/status?hashes=1` shows, what a
//! snapshot's header records and what a node joining from it checks. Equal hashes on two nodes
//! mean byte-identical canonical rows.

use std::collections::BTreeMap;

use rusqlite::Connection;

use super::LOCAL_ONLY;
use crate::store::StoreError;
use crate::store::schema::Collection;

/// A content hash of every replicated collection's table (see [`hash_table`]). Two nodes with
/// equal hashes hold byte-identical canonical rows (when quiet: no overlays). Computed on
/// demand (`/api/sync/status?hashes=1`, snapshots), it reads every row once.
pub fn table_hashes(
    conn: &Connection,
    schema: &crate::store::Schema,
) -> Result<BTreeMap<String, String>, StoreError> {
    let mut out = BTreeMap::new();
    for c in schema.all() {
        // A view holds nothing of its own: its rows follow from the tables hashed here.
        if c.name == LOCAL_ONLY || c.is_view() {
            continue;
        }
        out.insert(c.name.clone(), hash_table(conn, &c)?.0);
    }
    Ok(out)
}

/// How a table's content hash is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashScheme {
    /// Snapshot format 1: one sha256 over every row in `id` order. Walking the id index
    /// fetches rows in random order from the table, three to six times slower on a large
    /// table than reading it in storage order; kept to verify format 1 snapshots.
    IdOrdered,
    /// The sum (mod 2^256) of each row's sha256, over the table in storage order, then one
    /// sha256 over the row count and that sum. Independent of the order rows are stored in,
    /// which differs between nodes, so it needs no index walk.
    RowSum,
}

/// One table's content hash and its row count, in one pass: each row's stored columns
/// (type-tagged, lengths prefixed) hashed as `scheme` says.
pub fn hash_table(conn: &Connection, c: &Collection) -> Result<(String, u64), StoreError> {
    hash_table_with(conn, c, HashScheme::RowSum)
}

/// [`hash_table`] under a given scheme.
pub fn hash_table_with(
    conn: &Connection,
    c: &Collection,
    scheme: HashScheme,
) -> Result<(String, u64), StoreError> {
    use sha2::{Digest, Sha256};
    let cols: Vec<String> = c
        .fields
        .iter()
        .map(|f| crate::store::schema::quote_ident(&f.name))
        .collect();
    let order = match scheme {
        HashScheme::IdOrdered => " ORDER BY `id`",
        HashScheme::RowSum => "",
    };
    let sql = format!("SELECT {} FROM {}{order}", cols.join(", "), c.table());
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query([])?;
    let mut h = Sha256::new();
    let mut sum = RowSum::default();
    let mut count = 0u64;
    while let Some(row) = rows.next()? {
        count += 1;
        for i in 0..cols.len() {
            use rusqlite::types::ValueRef;
            match row.get_ref(i)? {
                ValueRef::Null => h.update([0u8]),
                ValueRef::Integer(v) => {
                    h.update([1u8]);
                    h.update(v.to_le_bytes());
                }
                ValueRef::Real(v) => {
                    h.update([2u8]);
                    h.update(v.to_le_bytes());
                }
                ValueRef::Text(t) => {
                    h.update([3u8]);
                    h.update((t.len() as u64).to_le_bytes());
                    h.update(t);
                }
                ValueRef::Blob(b) => {
                    h.update([4u8]);
                    h.update((b.len() as u64).to_le_bytes());
                    h.update(b);
                }
            }
        }
        if scheme == HashScheme::RowSum {
            sum.add(&h.finalize_reset().into());
        }
    }
    let digest: [u8; 32] = match scheme {
        HashScheme::IdOrdered => h.finalize().into(),
        HashScheme::RowSum => {
            let mut t = Sha256::new();
            t.update(b"syncbase-rowsum-1");
            t.update(count.to_le_bytes());
            t.update(sum.to_bytes());
            t.finalize().into()
        }
    };
    Ok((digest.iter().map(|b| format!("{b:02x}")).collect(), count))
}

/// A 256-bit little-endian sum of row digests, modulo 2^256.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct RowSum([u64; 4]);

impl RowSum {
    fn add(&mut self, digest: &[u8; 32]) {
        let mut carry = 0u128;
        for (k, limb) in self.0.iter_mut().enumerate() {
            let mut w = [0u8; 8];
            w.copy_from_slice(&digest[k * 8..k * 8 + 8]);
            let t = u128::from(*limb) + u128::from(u64::from_le_bytes(w)) + carry;
            *limb = t as u64;
            carry = t >> 64;
        }
    }

    fn to_bytes(self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (k, limb) in self.0.iter().enumerate() {
            out[k * 8..k * 8 + 8].copy_from_slice(&limb.to_le_bytes());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: u8) -> [u8; 32] {
        let mut d = [0u8; 32];
        d[0] = n;
        d
    }

    #[test]
    fn a_row_sum_does_not_depend_on_order_and_carries_across_limbs() {
        let (mut a, mut b) = (RowSum::default(), RowSum::default());
        for n in [3, 200, 77] {
            a.add(&digest(n));
        }
        for n in [77, 3, 200] {
            b.add(&digest(n));
        }
        assert_eq!(a, b);
        let mut c = RowSum::default();
        c.add(&[0xff; 32]);
        c.add(&digest(1));
        assert_eq!(c.to_bytes(), [0u8; 32], "2^256 - 1 + 1 wraps to 0");
        let mut d = RowSum::default();
        let mut low = [0u8; 32];
        low[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        d.add(&low);
        d.add(&digest(1));
        assert_eq!(d.0, [0, 1, 0, 0], "a carry moves into the next limb");
    }
}
