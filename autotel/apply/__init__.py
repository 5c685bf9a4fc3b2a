"""Applying a confirmed update: the logic behind the steps of `jobs/apply.yaml`.

The steps (`autotel/steps/{verify,backup,patch,migrate,restart,rollback}.py`) are
thin; the work is here, split so that decisions stay apart from disk and database:

    plan.py       pure: files replaced or created, backup names, which backups to
                  drop, whether the disk has room
    targets.py    where a package path lands, checked again right before any write
    package.py    reopen the verified package through its manifest's SHA-256
    workdir.py    the job's work folder under state/staging/ and its journal
    unpack.py     unpack the package into the work folder, hashing each file (verify)
    backup.py     write, re-check and restore `backups/backup_v<old>_<stamp>.zip`
    install.py    stage the new files, then rename them into place
    migrations.py the connection for `autotel.db.migrate` (one transaction)
    finish.py     version.txt, restart.flag, clear the pending package
    durable.py    flush many files at once; file work on a few threads
    faults.py     the test seam that halts or fails the apply at a named point

What each step leaves behind for a resumed job (every step is idempotent):

    verify   its result: package path, sha256, manifest sha256, versions; the files
             staged in state/staging/apply-<job>/files/, journal.json "staged"
    backup   state/staging/apply-<job>/backup.json names the backup before it is
             written and adds what it holds after; a re-run reuses it if every
             entry still matches its CRC-32, else rewrites it under the same name
    patch    journal.json: staged → replacing → replaced; a staged file leaves
             the folder in the very rename that installs it, so the folder says
             which files are done
    migrate  schema_migrations rows, in the same transaction as the migrations
    restart  version.txt, restart.flag, then the package cleared (the last act)
    rollback restores what differs from the backup, removes what was created

Verifying the package's signature is `autotel.package`'s job; running migrations
and their bookkeeping is `autotel.db`'s.
"""
