// Package e2e holds the Go half of the cross-language suite; its tests need the e2e build tag
// and a live server (see e2e_test.go).
package e2e
