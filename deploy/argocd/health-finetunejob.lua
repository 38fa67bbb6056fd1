-- Argo CD health check of kubetune.dev FineTuneJob (resource.customizations.health.kubetune.dev_FineTuneJob).
-- Reads status.phase, the kstatus conditions and observedGeneration that the kubetune operator writes.
local hs = {status = "Progressing", message = "Waiting for the kubetune operator"}

local function condition(ctype)
  if obj.status ~= nil and obj.status.conditions ~= nil then
    for _, c in ipairs(obj.status.conditions) do
      if c.type == ctype and c.status == "True" then
        return c
      end
    end
  end
  return nil
end

local function message(default)
  for _, ctype in ipairs({"Failed", "Stalled", "Ready", "Reconciling"}) do
    local c = condition(ctype)
    if c ~= nil and c.message ~= nil and c.message ~= "" then
      return c.message
    end
  end
  if obj.status ~= nil and obj.status.message ~= nil and obj.status.message ~= "" then
    return obj.status.message
  end
  return default
end

if obj.status == nil or obj.status.phase == nil then
  return hs
end
local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.message = "Waiting for the operator to observe generation " .. generation
  return hs
end

local phase = obj.status.phase
if phase == "Succeeded" then
  hs.status = "Healthy"
  local best = obj.status.bestCheckpoint
  hs.message = message(best ~= nil and ("Trained; best checkpoint " .. best) or "Trained")
elseif phase == "Failed" or condition("Stalled") ~= nil then
  hs.status = "Degraded"
  hs.message = message("Failed")
elseif phase == "Suspended" then
  hs.status = "Suspended"
  hs.message = message("Suspended")
else -- Pending, Validating, Queued, Running
  hs.status = "Progressing"
  local progress = obj.status.progress
  if phase == "Running" and progress ~= nil and progress.percent ~= nil then
    hs.message = "Running: " .. progress.percent .. "%"
  else
    hs.message = message(phase)
  end
end
return hs
