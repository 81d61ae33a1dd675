# The store and the Phoenix client, shared with the storefront tests.
from tests.serve.conftest import phoenix_client, phoenix_js, store_url  # noqa: F401
