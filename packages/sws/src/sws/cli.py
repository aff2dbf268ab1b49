"""`sws`: extract an SWS learngene, expand it into descendants of any depth, train and compare them."""

from learngene_core.learngene import method_cli

from .method import SWS

main = method_cli(SWS(), "sws", "SWS: Stage-wise Weight Sharing learngene.", "sws.configs")

if __name__ == "__main__":
    raise SystemExit(main())
