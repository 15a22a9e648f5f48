module github.com/tryd-ci/tryd/compat/xbuild

go 1.26.8
