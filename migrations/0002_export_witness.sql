-- The export witness: how many export cursors this database has seen handed out.
--
-- A cursor is a snapshot of the transaction counter (0001_readings.sql). A database
-- restored from an older physical backup sets that counter back, and once it has
-- passed the admin's cursor again nothing in the counter shows the restore: the rows
-- written after it would count as exported. This row goes back in time with the
-- database, while the site's file `state/export_mark.json` keeps the count it
-- recorded; a database whose count is below the file's was restored, and the site
-- answers the next push with every reading (autotel/export/mark.py, witness.py).
--
-- The site increments it (committed) before each cursor goes out, so the role in
-- `database.dsn` needs SELECT, INSERT and UPDATE on it. Without them the site still
-- exports and logs a warning: it is then protected by the counter check alone.
CREATE TABLE export_witness (
    single        boolean PRIMARY KEY DEFAULT true CHECK (single),  -- one row, at most
    handed_out    bigint NOT NULL DEFAULT 0 CHECK (handed_out >= 0),
    handed_out_at timestamptz
);

INSERT INTO export_witness DEFAULT VALUES;
