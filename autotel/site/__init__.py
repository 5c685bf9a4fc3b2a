"""Creating a site and reporting on it (`autotel init`, `cert`, `status`)."""
