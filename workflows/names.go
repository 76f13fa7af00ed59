// Package workflows holds sagaflow's Temporal workflows: deterministic code
// only (no I/O, clocks, randomness or goroutines; those live in activities).
// This file keeps the names clients, workers and the API share.
package workflows

import (
	"strings"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
)

// Task queues, one per saga family, so that each family's workers scale and
// fail on their own.
const (
	// TaskQueueOps runs operational workflows (probes).
	TaskQueueOps = "sagaflow-ops"
	// TaskQueueJoin runs the join-a-paid-meeting saga.
	TaskQueueJoin = "sagaflow-join"
	// TaskQueueCoupon runs the first-come coupon campaigns.
	TaskQueueCoupon = "sagaflow-coupon"
	// TaskQueueSync runs the marketplace sync.
	TaskQueueSync = "sagaflow-sync"
)

// QueryStatus is the query every sagaflow workflow answers with its state.
const QueryStatus = "status"

// UpdateCancel asks a join to cancel: before confirmation it compensates,
// after it refunds in full until the cancel deadline, and is refused after.
const UpdateCancel = "cancel"

// SearchAttributeTenant marks every workflow with the tenant that owns it;
// the API refuses to show a workflow to any other tenant.
var SearchAttributeTenant = temporal.NewSearchAttributeKeyKeyword("SagaflowTenant")

// SearchAttributes are the custom search attributes the namespace needs.
func SearchAttributes() map[string]enumspb.IndexedValueType {
	return map[string]enumspb.IndexedValueType{
		SearchAttributeTenant.GetName(): enumspb.INDEXED_VALUE_TYPE_KEYWORD,
		SearchAttributeParked.GetName(): enumspb.INDEXED_VALUE_TYPE_INT,
	}
}

// Workflow IDs start with the tenant's name and a colon, so that two tenants
// never share an ID and an ID alone says whose it is.
func workflowID(tenant, kind, id string) string {
	return tenant + ":" + kind + ":" + id
}

// TenantOfWorkflowID returns the tenant named in a sagaflow workflow ID.
func TenantOfWorkflowID(id string) (string, bool) {
	tenant, rest, ok := strings.Cut(id, ":")
	return tenant, ok && tenant != "" && rest != ""
}

// ProbeWorkflowID is the ID of the probe run id of tenant.
func ProbeWorkflowID(tenant, id string) string { return workflowID(tenant, "probe", id) }

// JoinWorkflowID is the ID of the join saga of joinID (meeting.JoinID).
func JoinWorkflowID(tenant, joinID string) string { return workflowID(tenant, "join", joinID) }

// Workflow type names, as registered by the workers.
const (
	ProbeWorkflowType    = "Probe"
	JoinWorkflowType     = "Join"
	CampaignWorkflowType = "Campaign"
)

// CampaignWorkflowID is the ID of the workflow of a coupon campaign.
func CampaignWorkflowID(tenant, campaignID string) string {
	return workflowID(tenant, "campaign", campaignID)
}
