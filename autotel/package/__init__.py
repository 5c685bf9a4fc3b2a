"""Update packages: building them (admin side) and accepting them (site side).

    update_vX.Y.Z.zip
      manifest.json   version, notes, created, expires, product,
                      files [{path, sha256, size}], migrations [{name, sha256}]
      manifest.sig    raw RSA-PSS signature of the exact bytes of manifest.json
      files/<path>    paths relative to the install directory
      migrations/<name>.sql

Modules, pure rules apart from I/O:

- `semver`, `paths`, `rules`, `manifest`: pure (version precedence; safe, unique and
  protected paths; zip-bomb limits, listing, expiry, product, version; the model
  and its canonical bytes).
- `zipread`: reading a zip without trusting it (bounded, streamed, counted).
- `verify.verify_package(zip_path, config, *, installed_version) -> Manifest`:
  the full acceptance check, self-contained, safe to call again at apply time.
- `unpack.read_migrations(zip_path, manifest)`: for the apply job, after
  `verify_package` on the stored zip; it re-hashes every byte it hands out.
- `pending`: the pending update in `state/pending_update/` (`read_pending`,
  `store_pending`, `clear_pending(paths, only_sha256=...)`).
- `delivery`: the `X-Update-Version` / `X-Manifest-Signature` headers against the zip.
- `build`, `sources`: `autotel publish` (reproducible zip, deterministic signature).
"""
