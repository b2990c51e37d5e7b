// Placeholder so the library has a source until probe_context.cc lands; delete then.
