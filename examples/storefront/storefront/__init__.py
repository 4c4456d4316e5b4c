"""A small storefront: users, stock, orders, payments and fulfilment.

Nothing here knows about tests. Configuration comes from the environment
(``storefront.settings``), read once at import, as a twelve-factor service does.
"""
