//! PocketBase's backups (`/api/backups`) on snapshot files.
