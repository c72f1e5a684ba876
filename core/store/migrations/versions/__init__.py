"""Revisions of the store's schema: revision `000N` brings a store to schema version N."""
