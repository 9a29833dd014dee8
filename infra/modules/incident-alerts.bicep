// People hear of incidents through the action group: a log alert over the healer's own telemetry
// (the healer.incidents metric in Application Insights' customMetrics; one point per incident,
// see shared/reporting/notify.py) per incident kind and target: escalations, principals that could not be
// re-added, data that could not be recovered, and runs whose message was poisoned (it failed every
// delivery up to maxDequeueCount: shared/runs/poison.py; /api/health counts `<queue>-poison`).
param location string
param tags object
param appInsightsName string
param actionGroupId string

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource incidents 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = {
  name: 'iotc-adx-healer-incidents'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'iotc-adx-healer needs a person (escalation, re-add failed, data not recovered, poisoned message)'
    description: 'Read the incident in the healer: python -m shared status / history TARGET / report TARGET --html FILE.'
    severity: 1
    enabled: true
    evaluationFrequency: 'PT5M'
    windowSize: 'PT5M'
    scopes: [appInsights.id]
    criteria: {
      allOf: [
        {
          // Rows, not a summary: the rule sums valueSum per dimension over its window (Microsoft's
          // log-alert query guidance: let the rule aggregate).
          query: 'customMetrics | where name == "healer.incidents" | extend IncidentKind = tostring(customDimensions["kind"]), target = tostring(customDimensions["target"]) | project timestamp, valueSum, IncidentKind, target'
          timeAggregation: 'Total'
          metricMeasureColumn: 'valueSum'
          operator: 'GreaterThan'
          threshold: 0
          dimensions: [
            { name: 'IncidentKind', operator: 'Include', values: ['*'] }
            { name: 'target', operator: 'Include', values: ['*'] }
          ]
          failingPeriods: { numberOfEvaluationPeriods: 1, minFailingPeriodsToAlert: 1 }
        }
      ]
    }
    autoMitigate: true
    actions: { actionGroups: [actionGroupId] }
  }
}

// A message the host poisons without the healer's last word: when a delivery never returns (the
// worker killed, functionTimeout), the host moves the message on its next dequeue *without invoking
// the function* (DequeueCount > maxDequeueCount), so no `poisoned` incident is raised. The host
// logs a warning whenever it moves a message (Azure/azure-sdk-for-net, the WebJobs queues
// extension's QueueProcessor.CopyMessageToPoisonQueueAsync: "Message has reached MaxDequeueCount of
// {n}. Moving message to queue '{name}-poison'."); this rule alerts on that line. Traces are
// sampled (host.json): /api/health's count of `<queue>-poison` is the record that cannot miss one.
resource poisonedMessages 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = {
  name: 'iotc-adx-healer-poisoned-messages'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'iotc-adx-healer: a remediation message was moved to the poison queue'
    description: 'Nothing reads <queue>-poison. Read the run in the healer (python -m shared status / history TARGET); the recovery sweep still discharges what the run owed.'
    severity: 1
    enabled: true
    evaluationFrequency: 'PT5M'
    windowSize: 'PT5M'
    scopes: [appInsights.id]
    criteria: {
      allOf: [
        {
          query: 'traces | where message has "MaxDequeueCount" and message contains "-poison" | project timestamp, message'
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: { numberOfEvaluationPeriods: 1, minFailingPeriodsToAlert: 1 }
        }
      ]
    }
    autoMitigate: true
    actions: { actionGroups: [actionGroupId] }
  }
}
