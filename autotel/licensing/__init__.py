"""Site licences: a signed statement that one site may run one product until a date.

`document` holds the pure part (the payload, its signed bytes, the checks);
`files` reads and writes `license.dat` and turns keys into verdicts. The watchdog
checks the licence once at start; `autotel license` issues and checks it.
"""
