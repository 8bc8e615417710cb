//! Containers and networks driven through the `docker` command line, for the tests that
//! need what testcontainers doesn't offer (cutting one node off a network).
