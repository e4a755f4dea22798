//! Nested ⇄ flat metadata keys for dotenv and INI (`__map_`/`__list_`).
