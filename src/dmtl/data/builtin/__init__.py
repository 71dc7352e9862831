"""dmtl.data.builtin."""
