package awscalls

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

func auth(key, service string) string {
	return "AWS4-HMAC-SHA256 Credential=" + key + "/20261201/us-east-1/" + service + "/aws4_request, SignedHeaders=host;x-amz-date, Signature=00"
}

func TestParse(t *testing.T) {
	tests := []struct {
		name   string
		auth   string
		target string
		body   string
		want   []Call
		ok     bool
	}{
		{"harness key is not recorded", auth("test", "dynamodb"), "DynamoDB_20120810.GetItem", `{"TableName":"t"}`, nil, false},
		{"unsigned", "", "AmazonSSM.GetParameter", `{"Name":"/p/a/secret"}`, nil, false},
		{"table", auth("RefreshApiFunction", "dynamodb"), "DynamoDB_20120810.UpdateItem",
			`{"TableName":"tbl-1","Key":{"pk":{"S":"state#shop"}},"ExpressionAttributeValues":{":n":{"S":"x"}}}`,
			[]Call{{Function: "RefreshApiFunction", Action: "dynamodb:UpdateItem", Resource: ResourceTable, KeyPrefix: "state#"}}, true},
		{"registration read", auth("RefreshApiFunction", "dynamodb"), "DynamoDB_20120810.GetItem",
			`{"TableName":"t","Key":{"pk":{"S":"app#shop"}},"ConsistentRead":true}`,
			[]Call{{Function: "RefreshApiFunction", Action: "dynamodb:GetItem", Resource: ResourceTable, KeyPrefix: "app#"}}, true},
		{"an item attribute called Name is no parameter", auth("ScheduledRefreshFunction", "dynamodb"), "DynamoDB_20120810.Scan",
			`{"TableName":"t","ExclusiveStartKey":{"Name":{"S":"/x/y/z"}}}`,
			[]Call{{Function: "ScheduledRefreshFunction", Action: "dynamodb:Scan", Resource: ResourceTable}}, true},
		{"core is every function", auth("RefreshCore", "ssm"), "AmazonSSM.PutParameter",
			`{"Name":"/wx-12/shop/access_token","Value":"v","Overwrite":true}`,
			[]Call{{Function: "*", Action: "ssm:PutParameter", Resource: ResourceParameter, Leaf: "access_token"}}, true},
		{"selector", auth("RefreshApiFunction", "ssm"), "AmazonSSM.GetParameter",
			`{"Name":"/a/b/shop/access_token:7","WithDecryption":true}`,
			[]Call{{Function: "RefreshApiFunction", Action: "ssm:GetParameter", Resource: ResourceParameter, Leaf: "access_token", Selector: true}}, true},
		{"raw name", auth("RefreshApiFunction", "ssm"), "AmazonSSM.GetParameter", `{"Name":"secret"}`,
			[]Call{{Function: "RefreshApiFunction", Action: "ssm:GetParameter", Resource: ResourceRaw, Name: "secret"}}, true},
		{"several names", auth("RefreshApiFunction", "ssm"), "AmazonSSM.GetParameters", `{"Names":["/p/a/secret","/p/a/access_token"]}`,
			[]Call{
				{Function: "RefreshApiFunction", Action: "ssm:GetParameters", Resource: ResourceParameter, Leaf: "access_token"},
				{Function: "RefreshApiFunction", Action: "ssm:GetParameters", Resource: ResourceParameter, Leaf: "secret"},
			}, true},
		{"no resource", auth("RefreshApiFunction", "ssm"), "AmazonSSM.DescribeParameters", `{}`,
			[]Call{{Function: "RefreshApiFunction", Action: "ssm:DescribeParameters", Resource: ResourceNone}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := Parse(tt.auth, tt.target, []byte(tt.body))
			if ok != tt.ok || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Parse = %+v, %v; want %+v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestRecorderCountsByKind(t *testing.T) {
	var r Recorder
	for i := 0; i < 3; i++ {
		r.Add(auth("RefreshApiFunction", "dynamodb"), "DynamoDB_20120810.GetItem", []byte(`{"TableName":"t","Key":{"pk":{"S":"state#a"}}}`))
	}
	r.Add(auth("test", "dynamodb"), "DynamoDB_20120810.PutItem", []byte(`{"TableName":"t"}`))
	r.Add(auth("ScheduledRefreshFunction", "dynamodb"), "DynamoDB_20120810.Scan", []byte(`{"TableName":"t"}`))
	var buf bytes.Buffer
	if err := r.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var got []Call
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	want := []Call{
		{Function: "RefreshApiFunction", Action: "dynamodb:GetItem", Resource: ResourceTable, KeyPrefix: "state#", Count: 3},
		{Function: "ScheduledRefreshFunction", Action: "dynamodb:Scan", Resource: ResourceTable, Count: 1},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("recorded %+v, want %+v", got, want)
	}
}

func TestEntryPointWithoutAnEntryIsCore(t *testing.T) {
	c, err := EntryPoint{}.Retrieve(t.Context())
	if err != nil || c.AccessKeyID != string(Core) {
		t.Errorf("Retrieve outside the refresh core = %q, %v; want %q", c.AccessKeyID, err, Core)
	}
}
