// Package layers holds the test that keeps swarmvpn's packages in their
// layers: each package imports only the packages its layer allows, as the
// table in layers_test.go and the architecture in the README say. It has no
// code of its own.
package layers
