-- PostgreSQL partitions `events` by day for retention in this version; SQLite has no
-- partitions and keeps one table: retention deletes its old rows oldest first
-- (store/src/sqlite/retention.rs). The same version on both keeps the histories aligned.
SELECT 1;
