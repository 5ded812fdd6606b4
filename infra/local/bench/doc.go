// Package bench holds wxtoken's benchmarks: the availability and quota
// simulation of a day (wxtoken beside the usual ways of handling WeChat's
// access_token; wxtoken's jsapi ticket and the JS-SDK pages signed with it,
// under each answer WeChat may give to a repeated ticket call), the
// coalescing burst and the scale of a scheduled run. They run against the
// local test bed (DynamoDB Local, moto) and the WeChat sandbox, as the
// integration tests do.
//
// `make bench` runs them with WXTOKEN_BENCH_DIR set; each writes a
// markdown section there, and infra/local/benchreport assembles
// BENCHMARKS.md from the sections. Under `make test` the short versions of
// the simulation run as tests (TestAvailabilitySmoke,
// TestTicketRotationSmoke), so the model cannot rot unnoticed.
package bench
