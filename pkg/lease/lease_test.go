package lease_test

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/wxtoken/wxtoken/pkg/lease"
	"github.com/wxtoken/wxtoken/pkg/lease/leasetest"
	"github.com/wxtoken/wxtoken/pkg/testsupport/awstest"
)

// TestContract runs the lease table's contract against DynamoDB (Local):
// the engine is what the fake in leasetest is held to.
func TestContract(t *testing.T) {
	cfg := awstest.Config(t, awstest.DynamoDB)
	client := dynamodb.NewFromConfig(cfg)
	leasetest.Contract(t, func(t *testing.T) leasetest.Leases {
		return lease.New(client, awstest.Table(t, cfg))
	})
}
