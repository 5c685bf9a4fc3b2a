"""`autotel demo`: the whole cycle on one machine, for a first look and as an end-to-end check.

`world` builds what the admin and the plant would have (keys, a licensed site with a
simulated collector, an update package); `site_process` runs the site's watchdog as
a real subprocess; `portal_client` talks to the operator portal as the page does;
`run` strings it together; `collector` is the simulated collector itself
(`python -m autotel.demo.collector`).
"""
