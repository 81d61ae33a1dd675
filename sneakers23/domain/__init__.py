"""Pure shop logic: no Ray, no database. Everything here is tested in milliseconds."""
