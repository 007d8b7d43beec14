"""Operations: the only layer that sequences kernel, store and process steps."""
