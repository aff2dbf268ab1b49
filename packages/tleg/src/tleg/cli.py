"""`tleg`: extract a TLEG learngene, expand it into descendants of any depth, train and compare them."""

from learngene_core.learngene.cli import method_cli


def _method():
    from .method import TLEG

    return TLEG()


main = method_cli(_method, "tleg", "TLEG: Transformer as Linear Expansion of Learngene.", "tleg.configs")

if __name__ == "__main__":
    raise SystemExit(main())
