-- Argo CD health check for kubeinfer.io/ModelDeployment.
-- Install it in argocd-cm as resource.customizations.health.kubeinfer.io_ModelDeployment
-- (integrations/argocd/README.md). It reads only the status the operator writes.
local hs = {}
local function find(conditions, kind)
  for _, c in ipairs(conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local status = obj.status
if status == nil or status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the kubeinfer operator"
  return hs
end
local generation = obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the kubeinfer operator to observe the latest spec"
  return hs
end

local conditions = status.conditions
local selected = find(conditions, "EngineSelected")
local degraded = find(conditions, "Degraded")
local progressing = find(conditions, "Progressing")
local ready = find(conditions, "Ready")
if selected ~= nil and selected.status == "False" then
  -- No engine can run it (or the spec is invalid): nothing will change until someone acts.
  hs.status = "Degraded"
  hs.message = selected.reason .. ": " .. (selected.message or "")
elseif degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = degraded.reason .. ": " .. (degraded.message or "")
elseif progressing ~= nil and progressing.status == "False" then
  hs.status = "Degraded"
  hs.message = progressing.reason .. ": " .. (progressing.message or "")
elseif ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or ""
else
  hs.status = "Progressing"
  if ready ~= nil then
    hs.message = ready.reason .. ": " .. (ready.message or "")
  else
    hs.message = "Waiting for the kubeinfer operator"
  end
end
return hs
