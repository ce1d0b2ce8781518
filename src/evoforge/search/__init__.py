"""The domain-agnostic search engine (ask/tell, algorithms, termination). Never imports torch or IREE.

Import the pieces from their modules (``evoforge.search.engine``, ``.domain``, ``.evaluation``,
``.termination``, ``.algorithms``); this package itself stays import-light.
"""
