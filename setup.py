"""Only the C extension lives here; everything else is in pyproject.toml.

Multi-buffer SHA-256 for restore and verify (``e3backup.repo.hashing`` falls back to hashlib where
it is not built or the CPU lacks AVX-512). Optional: an install without a C compiler still works.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "e3backup._sha256mb",
            sources=["src/e3backup/_sha256mb.c"],
            optional=True,
            extra_compile_args=["-O3"],
        )
    ]
)
