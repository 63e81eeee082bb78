#!/usr/bin/env python3
"""Writes docs/openapi.json, the admin API's OpenAPI 3.0 document (served at
/openapi.json, fuzzed by schemathesis in tests/interop/admin_api.rs).
Run it after changing a route or a response shape: python3 scripts/openapi-gen.py"""
import json, os
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'docs', 'openapi.json')
def ref(n): return {"$ref": f"#/components/schemas/{n}"}
def jr(desc, schema): return {"description": desc, "content": {"application/json": {"schema": schema}}}
def err(desc): return jr(desc, ref("Error"))
S = lambda: {"type":"string"}
NS = lambda: {"type":"string","nullable":True}
I = lambda: {"type":"integer"}
B = lambda: {"type":"boolean"}
def obj(props, req=None): 
    o={"type":"object","properties":props}
    if req: o["required"]=req
    return o
def wrap(key, schema): return obj({key: schema},[key])
def arr(s): return {"type":"array","items":s}
path_id = lambda name, desc: {"name":name,"in":"path","required":True,"schema":{"type":"string"},"description":desc}
common_errs = {"401": err("no valid bearer token (when tokens are configured)"), "403": err("the token's role may not do this")}
def op(summary, opid, responses, params=None, body=None, tags=None):
    o={"summary":summary,"operationId":opid,"responses":{**responses, **common_errs}}
    if params: o["parameters"]=params
    if body: o["requestBody"]={"required":True,"content":{"application/json":{"schema":body}}}
    if tags: o["tags"]=tags
    return o
write_errs = {"404": err("no such resource"), "409": err("the file was edited by hand since it was loaded, or a rule of the managed service refuses the change"), "422": jr("the change would make the configuration invalid", ref("InvalidConfig")), "500": err("the file could not be written")}

schemas = {
 "Error": obj({"Code":S(),"Message":S()},["Code","Message"]),
 "InvalidConfig": obj({"Code":S(),"Message":S(),"Errors":arr(S())},["Code","Message","Errors"]),
 "Route": obj({"Host":S(),"Port":I(),"Protocol":{"type":"string","enum":["UDP","TCP","TLS"]},"Priority":I(),"Weight":I()},["Host","Port","Protocol","Priority","Weight"]),
 "VoiceConnector": obj({"VoiceConnectorId":S(),"Name":S(),"AwsRegion":S(),"OutboundHostName":S(),"RequireEncryption":B(),"NetworkType":S(),"Tags":{"type":"object","additionalProperties":S()}},["VoiceConnectorId","Name","AwsRegion","OutboundHostName","RequireEncryption"]),
 "Termination": obj({"Disabled":B(),"CpsLimit":I(),"DefaultPhoneNumber":NS(),"CallingRegions":arr(S()),"CidrAllowedList":arr(S()),"Carriers":arr(S()),"Credentials":arr(obj({"Username":S()},["Username"])),"RequireClientCertificate":B()},["Disabled","CpsLimit","CallingRegions","CidrAllowedList"]),
 "Origination": obj({"Disabled":B(),"Routes":arr(ref("Route"))},["Disabled","Routes"]),
 "LoggingConfiguration": obj({"EnableSIPLogs":B(),"EnableMediaMetricLogs":B()},["EnableSIPLogs","EnableMediaMetricLogs"]),
 "LoggingConfigurationInput": obj({"EnableSIPLogs":{"type":"boolean","nullable":True},"EnableMediaMetricLogs":{"type":"boolean","nullable":True}}),
 "StreamingConfiguration": obj({"Disabled":B(),"DataRetentionInHours":I(),"StreamingNotificationTargets":arr(obj({"NotificationTarget":S()},["NotificationTarget"])),"Sinks":arr(obj({"Type":S(),"Url":S(),"Directory":S()},["Type"]))},["Disabled","DataRetentionInHours"]),
 "EmergencyCallingConfiguration": obj({"DNIS":arr(obj({"EmergencyPhoneNumber":S(),"TestPhoneNumber":NS(),"CallingCountry":S(),"CallbackPhoneNumber":NS()},["EmergencyPhoneNumber","CallingCountry"]))},["DNIS"]),
 "TerminationHealth": {"type":"object","nullable":True,"properties":{"Timestamp":S(),"Source":S()},"required":["Timestamp","Source"]},
 "VoiceConnectorGroup": obj({"VoiceConnectorGroupId":S(),"Name":S(),"VoiceConnectorItems":arr(obj({"VoiceConnectorId":S(),"Priority":I()},["VoiceConnectorId","Priority"])),"Tags":{"type":"object","additionalProperties":S()}},["VoiceConnectorGroupId","Name","VoiceConnectorItems"]),
 "SipMediaApplication": obj({"SipMediaApplicationId":S(),"Name":S(),"AwsRegion":S(),"Endpoints":arr(obj({"Url":S(),"Priority":I()},["Url","Priority"])),"Tags":{"type":"object","additionalProperties":S()}},["SipMediaApplicationId","Name","Endpoints"]),
 "SipRule": obj({"SipRuleId":S(),"Name":S(),"Disabled":B(),"TriggerType":{"type":"string","enum":["ToPhoneNumber","RequestUriHostname"]},"TriggerValue":S(),"TargetApplications":arr(obj({"SipMediaApplicationId":S(),"Priority":I()},["SipMediaApplicationId","Priority"]))},["SipRuleId","Name","Disabled","TriggerType","TriggerValue","TargetApplications"]),
 "PhoneNumber": obj({"PhoneNumberId":S(),"E164PhoneNumber":S(),"Country":NS(),"ProductType":{"type":"string","enum":["VoiceConnector","SipMediaApplicationDialIn"]},"Status":{"type":"string","enum":["Unassigned","Assigned","DeleteInProgress","Deleted"]},"CallingName":NS(),"Name":NS(),"Associations":arr(obj({"Name":{"type":"string","enum":["VoiceConnectorId","VoiceConnectorGroupId","SipRuleId"]},"Value":S()},["Name","Value"])),"DeletionTimestamp":NS(),"PortInStatus":{"type":"string","nullable":True,"enum":["Submitted","PendingDocuments","Foc","Exception","ChangeRequested","CancelRequested","Cancelled","Completed",None]}},["PhoneNumberId","E164PhoneNumber","ProductType","Status","Associations"]),
 "PhoneNumberUpdate": obj({"CallingName":S(),"Name":S(),"ProductType":{"type":"string","enum":["VoiceConnector","SipMediaApplicationDialIn"]}}),
 "Associate": obj({"E164PhoneNumbers":{"type":"array","items":S(),"minItems":1,"maxItems":1000},"ForceAssociate":B()},["E164PhoneNumbers"]),
 "PhoneNumberErrors": obj({"PhoneNumberErrors":arr(obj({"PhoneNumberId":S(),"ErrorCode":S(),"ErrorMessage":S()},["PhoneNumberId","ErrorCode","ErrorMessage"]))},["PhoneNumberErrors"]),
 "Side": obj({"PacketsReceived":I(),"PacketsSent":I(),"PacketsLost":{"type":"integer","nullable":True},"JitterMicroseconds":{"type":"integer","nullable":True},"RoundTripTimeMicroseconds":{"type":"integer","nullable":True},"Mos":{"type":"number","nullable":True}}),
 "Call": obj({"TransactionId":S(),"VoiceConnectorId":NS(),"Kind":{"type":"string","enum":["bridge","recording","application"]},"Direction":{"type":"string","enum":["Inbound","Outbound"]},"FromPhoneNumber":S(),"ToPhoneNumber":S(),"StartTimeEpochMilliseconds":I(),"DurationSeconds":I(),"Quality":{"type":"object","nullable":True,"properties":{"Customer":ref("Side"),"Remote":ref("Side")}}},["TransactionId","Kind","Direction","FromPhoneNumber","ToPhoneNumber","StartTimeEpochMilliseconds","DurationSeconds"]),
 "RouteState": obj({"Route":S(),"Host":S(),"Port":I(),"Protocol":S(),"Priority":I(),"Weight":I(),"Owner":{"type":"object"},"CallState":{"type":"string","nullable":True,"enum":["UP","DOWN",None]},"ProbeState":{"type":"string","nullable":True,"enum":["UP","DOWN",None]}},["Route","Owner"]),
 "Backlog": obj({"sinks":arr({"type":"object"}),"spool_bytes":I()},["sinks","spool_bytes"]),
 "CreateCall": obj({"FromPhoneNumber":S(),"ToPhoneNumber":S(),"SipHeaders":{"type":"object","additionalProperties":S()},"ArgumentsMap":{"type":"object","additionalProperties":S()}},["FromPhoneNumber","ToPhoneNumber"]),
 "UpdateCall": obj({"Arguments":{"type":"object","additionalProperties":S()}},["Arguments"]),
 "SmaCall": wrap("SipMediaApplicationCall", obj({"TransactionId":S()},["TransactionId"])),
}
vc = path_id("id","voice connector id")
P = {}
P["/metrics"]={"get":{"summary":"Prometheus metrics (OpenMetrics text)","operationId":"GetMetrics","responses":{"200":{"description":"metrics","content":{"application/openmetrics-text":{"schema":S()}}},**common_errs}}}
P["/healthz"]={"get":{"summary":"liveness with a resource summary","operationId":"GetHealth","responses":{"200":{"description":"ok","content":{"text/plain":{"schema":S()}}},**common_errs}}}
P["/openapi.json"]={"get":{"summary":"this document","operationId":"GetOpenApi","responses":{"200":jr("the document",{"type":"object"})}}}
P["/reload"]={"post":{"summary":"re-read the configuration file","operationId":"Reload","responses":{"200":{"description":"reloaded: a summary","content":{"text/plain":{"schema":S()}}},"422":{"description":"the file is invalid: every error, one per line","content":{"text/plain":{"schema":S()}}},**common_errs}}}
P["/records/backlog"]={"get":op("records waiting for each remote sink","GetRecordsBacklog",{"200":jr("backlog",ref("Backlog"))})}
P["/records/flush"]={"post":op("retry every pending upload now","FlushRecords",{"202":jr("backlog as it stands",ref("Backlog"))})}
P["/routes"]={"get":op("carrier hosts and origination routes with their state","ListRoutes",{"200":jr("routes",wrap("Routes",arr(ref("RouteState"))))})}
P["/voice-connectors"]={"get":op("ListVoiceConnectors","ListVoiceConnectors",{"200":jr("voice connectors",wrap("VoiceConnectors",arr(ref("VoiceConnector"))))})}
P["/voice-connectors/{id}"]={
 "get":op("GetVoiceConnector","GetVoiceConnector",{"200":jr("the voice connector",wrap("VoiceConnector",ref("VoiceConnector"))),"404":err("no such voice connector")},[vc]),
 "delete":op("DeleteVoiceConnector: refused while numbers are assigned or a group lists it","DeleteVoiceConnector",{"204":{"description":"deleted"},**write_errs},[vc]),
 "post":op("AssociatePhoneNumbersWithVoiceConnector / DisassociatePhoneNumbersFromVoiceConnector","AssociatePhoneNumbersWithVoiceConnector",{"200":jr("numbers that could not be changed",ref("PhoneNumberErrors")),"400":err("bad request"),**write_errs},[vc,{"name":"operation","in":"query","required":True,"schema":{"type":"string","enum":["associate-phone-numbers","disassociate-phone-numbers"]}}],ref("Associate")),
}
for sub,name,schema in [("termination","Termination","Termination"),("origination","Origination","Origination"),("streaming-configuration","StreamingConfiguration","StreamingConfiguration"),("emergency-calling-configuration","EmergencyCallingConfiguration","EmergencyCallingConfiguration")]:
    P[f"/voice-connectors/{{id}}/{sub}"]={"get":op(f"GetVoiceConnector{name}",f"GetVoiceConnector{name}",{"200":jr(name,wrap(name,ref(schema))),"404":err("no such voice connector")},[vc])}
P["/voice-connectors/{id}/termination/health"]={"get":op("GetVoiceConnectorTerminationHealth: the last OPTIONS ping","GetVoiceConnectorTerminationHealth",{"200":jr("health",wrap("TerminationHealth",ref("TerminationHealth"))),"404":err("no such voice connector")},[vc])}
P["/voice-connectors/{id}/logging-configuration"]={
 "get":op("GetVoiceConnectorLoggingConfiguration","GetVoiceConnectorLoggingConfiguration",{"200":jr("logging",wrap("LoggingConfiguration",ref("LoggingConfiguration"))),"404":err("no such voice connector")},[vc]),
 "put":op("PutVoiceConnectorLoggingConfiguration","PutVoiceConnectorLoggingConfiguration",{"200":jr("logging",wrap("LoggingConfiguration",ref("LoggingConfiguration"))),"400":err("bad request"),**write_errs},[vc],wrap("LoggingConfiguration",ref("LoggingConfigurationInput"))),
}
g = path_id("id","voice connector group id")
P["/voice-connector-groups"]={"get":op("ListVoiceConnectorGroups","ListVoiceConnectorGroups",{"200":jr("groups",wrap("VoiceConnectorGroups",arr(ref("VoiceConnectorGroup"))))})}
P["/voice-connector-groups/{id}"]={
 "get":op("GetVoiceConnectorGroup","GetVoiceConnectorGroup",{"200":jr("group",wrap("VoiceConnectorGroup",ref("VoiceConnectorGroup"))),"404":err("no such group")},[g]),
 "delete":op("DeleteVoiceConnectorGroup: refused while numbers are assigned","DeleteVoiceConnectorGroup",{"204":{"description":"deleted"},**write_errs},[g]),
 "post":op("AssociatePhoneNumbersWithVoiceConnectorGroup / Disassociate…","AssociatePhoneNumbersWithVoiceConnectorGroup",{"200":jr("numbers that could not be changed",ref("PhoneNumberErrors")),"400":err("bad request"),**write_errs},[g,{"name":"operation","in":"query","required":True,"schema":{"type":"string","enum":["associate-phone-numbers","disassociate-phone-numbers"]}}],ref("Associate")),
}
sm = path_id("id","SIP media application id")
P["/sip-media-applications"]={"get":op("ListSipMediaApplications","ListSipMediaApplications",{"200":jr("applications",wrap("SipMediaApplications",arr(ref("SipMediaApplication"))))})}
P["/sip-media-applications/{id}"]={
 "get":op("GetSipMediaApplication","GetSipMediaApplication",{"200":jr("application",wrap("SipMediaApplication",ref("SipMediaApplication"))),"404":err("no such application")},[sm]),
 "delete":op("DeleteSipMediaApplication: refused while a SIP rule targets it","DeleteSipMediaApplication",{"204":{"description":"deleted"},**write_errs},[sm]),
}
P["/sip-media-applications/{sma_id}/calls"]={"post":op("CreateSipMediaApplicationCall","CreateSipMediaApplicationCall",{"201":jr("placed",ref("SmaCall")),"400":err("bad request"),"404":err("no such application"),"503":err("the engine cannot place calls")},[path_id("sma_id","SIP media application id")],ref("CreateCall"))}
P["/sip-media-applications/{sma_id}/calls/{transaction_id}"]={"post":op("UpdateSipMediaApplicationCall","UpdateSipMediaApplicationCall",{"200":jr("updated",ref("SmaCall")),"400":err("bad request"),"404":err("no such call"),"429":err("updates waiting")},[path_id("sma_id","SIP media application id"),path_id("transaction_id","the call's transaction id")],ref("UpdateCall"))}
r = path_id("id","SIP rule id")
P["/sip-rules"]={"get":op("ListSipRules","ListSipRules",{"200":jr("rules",wrap("SipRules",arr(ref("SipRule"))))})}
P["/sip-rules/{id}"]={
 "get":op("GetSipRule","GetSipRule",{"200":jr("rule",wrap("SipRule",ref("SipRule"))),"404":err("no such rule")},[r]),
 "delete":op("DeleteSipRule: refused while it is enabled","DeleteSipRule",{"204":{"description":"deleted"},**write_errs},[r]),
}
q = lambda n, schema, d: {"name":n,"in":"query","required":False,"schema":schema,"description":d}
P["/phone-numbers"]={"get":op("ListPhoneNumbers","ListPhoneNumbers",{"200":jr("a page of numbers",obj({"PhoneNumbers":arr(ref("PhoneNumber")),"NextToken":NS()},["PhoneNumbers"])),"400":err("bad filter")},[
 q("status",{"type":"string","enum":["Unassigned","Assigned","DeleteInProgress","Deleted"]},"status"),
 q("product-type",{"type":"string","enum":["VoiceConnector","SipMediaApplicationDialIn"]},"product type"),
 q("filter-name",{"type":"string","enum":["VoiceConnectorId","VoiceConnectorGroupId","SipRuleId"]},"association kind (with filter-value)"),
 q("filter-value",S(),"association id"),
 q("max-results",{"type":"integer","minimum":1,"maximum":1000},"page size (100)"),
 q("next-token",S(),"from the previous page"),
])}
pn = path_id("e164","the number, E.164 (+ as %2B or literal)")
P["/phone-numbers/{e164}"]={
 "get":op("GetPhoneNumber","GetPhoneNumber",{"200":jr("the number",wrap("PhoneNumber",ref("PhoneNumber"))),"400":err("not an E.164 number"),"404":err("not in the inventory")},[pn]),
 "post":op("UpdatePhoneNumber, or RestorePhoneNumber with ?operation=restore","UpdatePhoneNumber",{"200":jr("the number",wrap("PhoneNumber",ref("PhoneNumber"))),"400":err("bad request"),**write_errs},[pn,{"name":"operation","in":"query","required":False,"schema":{"type":"string","enum":["restore"]}}],ref("PhoneNumberUpdate")),
 "delete":op("DeletePhoneNumber: to the deletion queue (restorable for number_restore_days)","DeletePhoneNumber",{"204":{"description":"in the deletion queue"},"400":err("bad request"),**write_errs},[pn]),
}
t = path_id("txn","the call's transaction id")
P["/calls"]={"get":op("calls in progress with their quality","ListCalls",{"200":jr("calls",wrap("Calls",arr(ref("Call"))))})}
P["/calls/{txn}"]={
 "get":op("one call in progress","GetCall",{"200":jr("call",wrap("Call",ref("Call"))),"404":err("no such call")},[t]),
 "delete":op("hang up a call (BYE both ways)","HangUpCall",{"204":{"description":"hanging up"},"404":err("no such call")},[t]),
}
doc={"openapi":"3.0.3","info":{"title":"trunkd admin API","version":"1","description":"The managed voice-connector service's REST resources on trunkd's admin listener (SPEC §11). Authorization: Bearer <token> when [admin] tokens are configured; roles read-only < operator < admin. Writes edit the configuration file (validated as a reload, atomic, comments kept); 409 when it was edited by hand since it was loaded."},
 "servers":[{"url":"http://127.0.0.1:9060"}],
 "components":{"schemas":schemas,"securitySchemes":{"bearer":{"type":"http","scheme":"bearer"}}},
 "security":[{"bearer":[]}],
 "paths":P}
json.dump(doc, open(OUT,'w'), indent=1, ensure_ascii=False)


# ---- writes (second generation) ----
doc=json.load(open(OUT))
P=doc['paths']; C=doc['components']['schemas']
C["VoiceConnectorInput"]=obj({"VoiceConnectorId":S(),"Name":S(),"AwsRegion":S(),"RequireEncryption":B(),"NetworkType":S()})
C["TerminationInput"]=obj({"Disabled":B(),"CpsLimit":I(),"DefaultPhoneNumber":S(),"CallingRegions":arr(S()),"CidrAllowedList":arr(S()),"Carriers":arr(S()),"RequireClientCertificate":B()})
C["OriginationInput"]=obj({"Disabled":B(),"Routes":arr(obj({"Host":S(),"Port":I(),"Protocol":S(),"Priority":I(),"Weight":I()}))})
C["StreamingInput"]=obj({"Disabled":B(),"DataRetentionInHours":I(),"StreamingNotificationTargets":arr(obj({"NotificationTarget":S()},["NotificationTarget"])),"Sinks":arr(obj({"Type":S(),"Url":S(),"Directory":S()}))})
C["EmergencyInput"]=obj({"DNIS":arr(obj({"EmergencyPhoneNumber":S(),"TestPhoneNumber":S(),"CallingCountry":S(),"CallbackPhoneNumber":S()}))},["DNIS"])
C["GroupInput"]=obj({"VoiceConnectorGroupId":S(),"Name":S(),"VoiceConnectorItems":arr(obj({"VoiceConnectorId":S(),"Priority":I()}))})
C["SmaInput"]=obj({"SipMediaApplicationId":S(),"Name":S(),"AwsRegion":S(),"Endpoints":arr(obj({"Url":S(),"LambdaArn":S(),"Priority":I()}))})
C["RuleInput"]=obj({"SipRuleId":S(),"Name":S(),"TriggerType":S(),"TriggerValue":S(),"Disabled":B(),"TargetApplications":arr(obj({"SipMediaApplicationId":S(),"Priority":I(),"AwsRegion":S()}))})
C["NumberInput"]=obj({"E164PhoneNumber":S(),"ProductType":S(),"CallingName":S(),"Name":S()},["E164PhoneNumber"])
C["Credentials"]=obj({"Credentials":arr(obj({"Username":S(),"Password":S()},["Username","Password"]))})
C["Usernames"]=obj({"Usernames":arr(S())},["Usernames"])
bad_=err("bad request")
vcresp=jr("the voice connector",wrap("VoiceConnector",ref("VoiceConnector")))
P["/voice-connectors"]["post"]=op("CreateVoiceConnector","CreateVoiceConnector",{"201":vcresp,"400":bad_,**write_errs},None,ref("VoiceConnectorInput"))
P["/voice-connectors/{id}"]["put"]=op("UpdateVoiceConnector","UpdateVoiceConnector",{"200":vcresp,"400":bad_,**write_errs},[vc],ref("VoiceConnectorInput"))
for sub,name,inp,wrapk in [("termination","Termination","TerminationInput","Termination"),("origination","Origination","OriginationInput","Origination"),("streaming-configuration","StreamingConfiguration","StreamingInput","StreamingConfiguration"),("emergency-calling-configuration","EmergencyCallingConfiguration","EmergencyInput","EmergencyCallingConfiguration")]:
    item=P[f"/voice-connectors/{{id}}/{sub}"]
    item["put"]=op(f"PutVoiceConnector{name}",f"PutVoiceConnector{name}",{"200":vcresp,"204":{"description":"removed (an empty DNIS)"},"400":bad_,**write_errs},[vc],wrap(wrapk,ref(inp)))
    item["delete"]=op(f"DeleteVoiceConnector{name}",f"DeleteVoiceConnector{name}",{"204":{"description":"removed"},**write_errs},[vc])
P["/voice-connectors/{id}/termination/credentials"]={
 "get":op("ListVoiceConnectorTerminationCredentials","ListVoiceConnectorTerminationCredentials",{"200":jr("user names",ref("Usernames")),"404":err("no such voice connector")},[vc]),
 "post":op("PutVoiceConnectorTerminationCredentials, or with ?operation=delete DeleteVoiceConnectorTerminationCredentials ({\"Usernames\":[…]})","PutVoiceConnectorTerminationCredentials",{"204":{"description":"changed"},"400":bad_,**write_errs},[vc,{"name":"operation","in":"query","required":False,"schema":{"type":"string","enum":["delete"]}}],{"oneOf":[ref("Credentials"),ref("Usernames")]}),
}
P["/voice-connector-groups"]["post"]=op("CreateVoiceConnectorGroup","CreateVoiceConnectorGroup",{"201":jr("group",wrap("VoiceConnectorGroup",ref("VoiceConnectorGroup"))),"400":bad_,**write_errs},None,ref("GroupInput"))
P["/voice-connector-groups/{id}"]["put"]=op("UpdateVoiceConnectorGroup","UpdateVoiceConnectorGroup",{"200":jr("group",wrap("VoiceConnectorGroup",ref("VoiceConnectorGroup"))),"400":bad_,**write_errs},[g],ref("GroupInput"))
P["/sip-media-applications"]["post"]=op("CreateSipMediaApplication","CreateSipMediaApplication",{"201":jr("application",wrap("SipMediaApplication",ref("SipMediaApplication"))),"400":bad_,**write_errs},None,ref("SmaInput"))
P["/sip-media-applications/{id}"]["put"]=op("UpdateSipMediaApplication","UpdateSipMediaApplication",{"200":jr("application",wrap("SipMediaApplication",ref("SipMediaApplication"))),"400":bad_,**write_errs},[sm],ref("SmaInput"))
P["/sip-rules"]["post"]=op("CreateSipRule","CreateSipRule",{"201":jr("rule",wrap("SipRule",ref("SipRule"))),"400":bad_,**write_errs},None,ref("RuleInput"))
P["/sip-rules/{id}"]["put"]=op("UpdateSipRule","UpdateSipRule",{"200":jr("rule",wrap("SipRule",ref("SipRule"))),"400":bad_,**write_errs},[r],ref("RuleInput"))
P["/phone-numbers"]["post"]=op("add a number to the inventory (trunkd's own)","CreatePhoneNumber",{"201":jr("the number",wrap("PhoneNumber",ref("PhoneNumber"))),"400":bad_,**write_errs},None,ref("NumberInput"))
C["Tag"]=obj({"Key":S(),"Value":S()},["Key","Value"])
C["TagInput"]=obj({"ResourceARN":S(),"Tags":arr(ref("Tag")),"TagKeys":arr(S())},["ResourceARN"])
P["/tags"]={
 "get":op("ListTagsForResource","ListTagsForResource",{"200":jr("tags",wrap("Tags",arr(ref("Tag")))),"400":bad_,"404":err("no such resource")},[{"name":"arn","in":"query","required":True,"schema":S(),"description":"arn:aws:chime:<region>:<account>:vc/<id> (or vcg/<id>, sma/<id>)"}]),
 "post":op("TagResource (?operation=tag-resource) / UntagResource (?operation=untag-resource)","TagResource",{"204":{"description":"changed"},"400":bad_,**write_errs},[{"name":"operation","in":"query","required":True,"schema":{"type":"string","enum":["tag-resource","untag-resource"]}}],ref("TagInput")),
}
n=sum(len([m for m in v if m in ('get','put','post','delete')]) for v in P.values())
print("operations", n)

for path, item in doc['paths'].items():
    for m, o in item.items():
        for prm in o.get('parameters', []):
            if prm['name'] == 'e164':
                prm['schema'] = {"type": "string", "pattern": "^\\+[1-9][0-9]{1,14}$"}
json.dump(doc, open(OUT, 'w'), indent=1, ensure_ascii=False)
