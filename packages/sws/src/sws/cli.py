"""`sws`: extract an SWS learngene, expand it into descendants of any depth, train and compare them."""

from learngene_core.learngene.cli import method_cli


def _method():
    from .method import SWS

    return SWS()


main = method_cli(_method, "sws", "SWS: Stage-wise Weight Sharing learngene.", "sws.configs")

if __name__ == "__main__":
    raise SystemExit(main())
