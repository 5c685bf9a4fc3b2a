"""The watchdog: one supervisor per site for runner, agent, portal and the collector.

`states` is the pure state machine of one service (no processes, no clock of its
own); `process` is the one seam to the operating system (spawn, stop, kill, poll),
which tests replace to inject faults; `services` says what to run; `supervisor`
drives them all; `statusfile` publishes their state; `orphans` stops services a
killed watchdog left behind; `database` starts and stops the embedded PostgreSQL
the watchdog owns; `sitestatus` gathers what `autotel status` shows.
"""
