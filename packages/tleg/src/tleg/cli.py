"""`tleg`: extract a TLEG learngene, expand it into descendants of any depth, train and compare them."""

from learngene_core.learngene import method_cli

from .method import TLEG

main = method_cli(TLEG(), "tleg", "TLEG: Transformer as Linear Expansion of Learngene.", "tleg.configs")

if __name__ == "__main__":
    raise SystemExit(main())
